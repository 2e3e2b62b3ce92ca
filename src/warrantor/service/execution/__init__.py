"""After the decision: the action lifecycle, notarize, confirm-execution, Warrantor's own HTTP execution, runs."""

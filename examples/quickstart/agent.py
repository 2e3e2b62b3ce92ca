"""The agent's side: ask, act, report. Run with WARRANTOR_URL and WARRANTOR_AGENT_KEY set."""

import os

from warrantor.client import Client
from warrantor.errors import ActionDeniedError

REFUND = {"amount_minor": 4200, "currency": "EUR", "order_id": "1001"}

with Client(os.environ["WARRANTOR_URL"], os.environ["WARRANTOR_AGENT_KEY"]) as wr:
    auth = wr.authorize("refund", details="Refund order 1001 (damaged in transit)", payload=REFUND)
    print("authorized:", auth.action_id, auth.status)
    # ... the agent issues the refund here, then reports what actually ran:
    done = wr.notarize(auth.action_id, "completed", executed={"action_type": "refund", "payload": REFUND})
    print("receipt:", done.receipt["receipt_id"])
    try:
        wr.authorize("refund", payload={**REFUND, "amount_minor": 500000})
    except ActionDeniedError as exc:
        print("denied:", exc.details["reason"], "receipt:", exc.details["receipt_id"])

"""Records over time: holds, retention and erasure, audit export, the audit stream and webhooks."""

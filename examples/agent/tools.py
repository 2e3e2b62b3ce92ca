"""The agent's real tools: they call the bank and the mail provider over HTTP.

Nothing here knows about Warrantor: ``agent.py`` gates ``send_payment`` with the Pydantic AI
adapter and ``send_email`` with the SDK's ``@guard``.
"""

from __future__ import annotations

from typing import Any

import httpx

BANK_URL = ["http://127.0.0.1:0"]   # set by agent.py
MAIL_URL = ["http://127.0.0.1:0"]


async def send_payment(amount_minor: int, beneficiary: str, reference: str) -> dict[str, Any]:
    """Send a EUR wire transfer.

    Args:
        amount_minor: the amount in euro cents (120000 is 1,200.00 EUR).
        beneficiary: who is paid.
        reference: the invoice number.
    """
    async with httpx.AsyncClient(base_url=BANK_URL[0], timeout=10) as bank:
        r = await bank.post("/transfers", json={"amount_minor": amount_minor, "currency": "EUR",
                                                "beneficiary": beneficiary, "reference": reference})
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return {"transfer_id": body["id"], "amount_minor": amount_minor, "beneficiary": beneficiary}


async def send_email(to: str, subject: str, body: str) -> str:
    """Send an e-mail; returns the provider's message id."""
    async with httpx.AsyncClient(base_url=MAIL_URL[0], timeout=10) as mail:
        r = await mail.post("/messages", json={"to": to, "subject": subject, "body": body})
        r.raise_for_status()
        return str(r.json()["id"])

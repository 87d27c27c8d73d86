"""Standard Webhooks signing: ``whsec_`` secrets and the ``webhook-signature`` header.

The signed content is ``<webhook-id>.<webhook-timestamp>.<body>``; the signature is
``v1,<base64 HMAC-SHA256>`` under the secret's bytes (the base64 after ``whsec_``). During a
rotation a message is signed with every secret still valid, space-separated, so a receiver that
knows either verifies it (tests check this against the ``standardwebhooks`` package).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

from worker.domain.webhook_secret import PREFIX, new_secret, secret_bytes

__all__ = ["new_secret", "secret_bytes", "signature_header", "PREFIX"]


def signature_header(msg_id: str, timestamp: int, body: bytes, secrets: Iterable[str]) -> str:
    """The ``webhook-signature`` value: one ``v1,<sig>`` per secret, space-separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(secret_bytes(s), signed, hashlib.sha256).digest()).decode("ascii")
        for s in secrets)

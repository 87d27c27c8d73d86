"""Standard Webhooks signing: ``whsec_`` secrets and the ``webhook-signature`` header.

The signed content is ``<webhook-id>.<webhook-timestamp>.<body>``; the signature is
``v1,<base64 HMAC-SHA256>`` under the secret's bytes (the base64 after ``whsec_``). During a
rotation a message is signed with every secret still valid, space-separated, so a receiver that
knows either verifies it (tests check this against the ``standardwebhooks`` package).
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Iterable
from functools import lru_cache

from worker.domain.webhook_secret import PREFIX, new_secret, secret_bytes

__all__ = ["new_secret", "secret_bytes", "signature_header", "PREFIX"]


def signature_header(msg_id: str, timestamp: int, body: bytes, secrets: Iterable[str]) -> str:
    """The ``webhook-signature`` value: one ``v1,<sig>`` per secret, space-separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join("v1," + base64.b64encode(hmac.digest(_key(s), signed, "sha256")).decode("ascii")
                    for s in secrets)


@lru_cache(maxsize=256)
def _key(secret: str) -> bytes:
    """A secret's bytes, decoded once per process (a delivery signs with the same few secrets)."""
    return secret_bytes(secret)

"""Standard Webhooks signing: ``whsec_`` secrets and the ``webhook-signature`` header.

The signed content is ``<webhook-id>.<webhook-timestamp>.<body>``; the signature is
``v1,<base64 HMAC-SHA256>`` under the secret's bytes (the base64 after ``whsec_``). During a
rotation a message is signed with every secret still valid, space-separated, so a receiver that
knows either verifies it (tests check this against the ``standardwebhooks`` package).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as random
from collections.abc import Iterable

__all__ = ["new_secret", "secret_bytes", "signature_header", "PREFIX"]

PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh secret: 32 random bytes, base64, behind ``whsec_``."""
    return PREFIX + base64.b64encode(random.token_bytes(32)).decode("ascii")


def secret_bytes(secret: str) -> bytes:
    """The key of a ``whsec_`` secret; ValueError names what is wrong (never the secret)."""
    if not isinstance(secret, str) or not secret.startswith(PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        key = base64.b64decode(secret[len(PREFIX):] + "==", validate=False)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if len(key) < 16:
        raise ValueError("a webhook secret needs at least 16 bytes of key")
    return key


def signature_header(msg_id: str, timestamp: int, body: bytes, secrets: Iterable[str]) -> str:
    """The ``webhook-signature`` value: one ``v1,<sig>`` per secret, space-separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(secret_bytes(s), signed, hashlib.sha256).digest()).decode("ascii")
        for s in secrets)

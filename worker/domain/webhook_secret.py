"""A webhook secret's format: ``whsec_`` and the base64 of at least 16 random bytes.

Pure: the settings check ``VEXORA_WEBHOOK_SECRET`` with it at start-up, the endpoints check every
secret an operator gives, and ``worker.webhooks.signing`` signs with the bytes it yields.
"""

from __future__ import annotations

import base64
import binascii
import secrets as random

__all__ = ["PREFIX", "new_secret", "secret_bytes"]

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

"""Short exclusive locks in Redis: one reconciler pass, one webhook dispatcher pass at a time.

A lock is a key set only if absent, with a TTL and a random token; only the holder's token
releases it (``lua/release_lock.lua``), so a pass whose lock expired never frees the next one's.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from worker.store import scripts

__all__ = ["held"]


@contextmanager
def held(client: redis.Redis, key: str, ttl_seconds: int) -> Iterator[bool]:
    """``with held(r, key, ttl) as mine:`` — ``mine`` is False when another holds the lock."""
    token = secrets.token_hex(8)
    if not client.set(key, token, nx=True, ex=ttl_seconds):
        yield False
        return
    try:
        yield True
    finally:
        scripts.register(client, "release_lock")(keys=[key], args=[token])

"""Shared fixtures: the Redis the test command started (or a private one when run bare)."""

from __future__ import annotations

import os

import pytest

from worker.local.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_url():
    """REDIS_URL from the test command; a private redis-server when pytest runs on its own."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with RedisServer() as server:
        yield server.url

"""Integration fixtures: one stack of real processes per test module."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis

from tests.support.stack import Stack
from worker.local.redis_server import free_port
from worker.sandbox.receiver import make_receiver
from worker.webhooks.signing import new_secret


@pytest.fixture(scope="module")
def stack(redis_url, tmp_path_factory):
    s = Stack(redis_url, tmp_path_factory.mktemp("logs")).start(workers=1, concurrency=4)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(autouse=True)
def _clear_faults(request):
    if "stack" in request.fixturenames:
        request.getfixturevalue("stack").faults()
    yield


def prefixed_client(redis_url: str, prefix: str) -> Iterator[redis.Redis]:
    """A Redis client for a test's own key prefix, its keys removed before and after (use with
    ``yield from`` in a module's ``client`` fixture)."""
    c = redis.Redis.from_url(redis_url)
    for key in c.scan_iter(match=f"{prefix}:*"):
        c.delete(key)
    yield c
    for key in c.scan_iter(match=f"{prefix}:*"):
        c.delete(key)
    c.close()


@pytest.fixture
def receiver():
    """A verifying webhook receiver on a free port: its ``secret`` and ``base`` URL."""
    secret, port = new_secret(), free_port()
    server = make_receiver("127.0.0.1", port, secrets=[secret], path="/webhooks")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.secret = secret
    server.base = f"http://127.0.0.1:{port}"
    yield server
    server.shutdown()
    server.server_close()

"""Shared fixtures: the Redis the test command started (or a private one when run bare), and a
private RabbitMQ node, started on first use and kept for the session."""

from __future__ import annotations

import os

import pytest

from worker.local.redis_server import RedisServer
from tests.support.rabbitmq import UNAVAILABLE, RabbitNode, find_rabbitmq


@pytest.fixture(scope="session")
def redis_url():
    """REDIS_URL from the test command; a private redis-server when pytest runs on its own."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with RedisServer() as server:
        yield server.url


# The data nodes' and the Sentinels' passwords: markers the tests look for in every log.
SENTINEL_GROUP_PASSWORD = "redis-pw-MARKER-41c2"
SENTINEL_PASSWORD = "sentinel-pw-MARKER-9d07"


@pytest.fixture(scope="session")
def sentinel_group():
    """A master, a replica and three Sentinels, started once per test session (and only when a
    test asks). A test that kills the master brings the node back before it ends, so the next
    test finds a master and an in-sync replica again."""
    from worker.local.sentinel_group import SentinelGroup
    group = SentinelGroup(password=SENTINEL_GROUP_PASSWORD, sentinel_password=SENTINEL_PASSWORD).start()
    try:
        yield group
    finally:
        group.stop()


@pytest.fixture(scope="session")
def rabbitmq():
    """A private RabbitMQ node (tests/support/rabbitmq.py), once per session; the tests that use
    it are skipped, saying why, where rabbitmq-server is not installed."""
    bin_dir = find_rabbitmq()
    if bin_dir is None:
        pytest.skip(UNAVAILABLE)
    node = RabbitNode(bin_dir).start()
    try:
        yield node
    finally:
        node.close()

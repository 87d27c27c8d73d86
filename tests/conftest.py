"""Shared fixtures and how the suite runs in parallel.

The test command runs pytest-xdist workers (``./scripts/test -n N`` to choose; ``-n 0`` runs in
one process). Each worker has a private ``redis-server`` of its own (its ``REDIS_URL``), because a
stack flushes its Redis when it starts, and a range of listening ports of its own. A test module is one unit of work (its module-scoped
stack is started once), and the modules that share a session service share a worker: the
RabbitMQ tests one, the Sentinel tests another, so each service starts once per run. The slow
modules (the reliability suite, the heaviest integration scenarios) are handed out first, and
``-m "not slow"`` leaves them out: the quick set for the inner loop.
"""

from __future__ import annotations

import os

import pytest

from worker.local.redis_server import RedisServer
from tests.support import figures as _figures
from tests.support.rabbitmq import UNAVAILABLE, RabbitNode, find_rabbitmq

# Modules that share a session-scoped service run on one worker (ModuleScheduling below).
SERVICE_GROUPS = {
    "tests/integration/test_rabbitmq.py": "rabbitmq",
    "tests/reliability/test_rabbitmq_chaos.py": "rabbitmq",
    "tests/integration/test_sentinel.py": "sentinel",
    "tests/reliability/test_failover.py": "sentinel",
}
# The integration modules that take longest (besides tests/reliability/, all slow): measured with
# --durations=0, each 11 s or more with its stack's start and stop, 2026-12-07.
SLOW = {
    "tests/integration/test_deploy.py", "tests/integration/test_rabbitmq.py", "tests/integration/test_sentinel.py",
    "tests/integration/test_webhooks.py", "tests/integration/test_reconcile.py", "tests/integration/test_takeover.py",
    "tests/integration/test_demo.py", "tests/integration/test_review_and_metrics.py", "tests/integration/test_cli.py",
    "tests/integration/test_logs.py", "tests/integration/test_settlement.py",
    "tests/integration/test_monitoring_files.py",
}

_worker_redis: RedisServer | None = None


def pytest_configure(config):
    global _worker_redis
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        # Listening ports from a range of this worker's own, below the kernel's ephemeral ports
        # (32768 and up here): a port the kernel picked could be taken meanwhile by another
        # worker's server or by an outgoing connection (worker.local.redis_server.free_port).
        # VEXORA_TEST_PORT_SLOT shifts the ranges, so two runs side by side (two checkouts of the
        # repository, -n 2 each) do not share one
        slot = int(worker.removeprefix("gw")) + int(os.environ.get("VEXORA_TEST_PORT_SLOT", "0"))
        first = 20000 + (slot % 8) * 1500
        os.environ["VEXORA_FREE_PORTS"] = f"{first}-{first + 1499}"
        # a worker's own Redis, for every test and every process a test starts
        _worker_redis = RedisServer().start()
        os.environ["REDIS_URL"] = _worker_redis.url


def pytest_unconfigure(config):
    if _worker_redis is not None:
        _worker_redis.stop()


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(config, items):
    """Mark the slow modules and put them first, so that the longest are handed out first."""
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        if path.startswith("tests/reliability/") or path in SLOW:
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: 0 if item.get_closest_marker("slow") else 1)  # stable: keeps module order


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """One unit of work per module (its module-scoped stack starts once), and one per service
    group. (xdist's own ``loadgroup`` cannot do it under pytest 9: its renamed node ids do not take.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return SERVICE_GROUPS.get(path, path)

    return ModuleScheduling(config, log)


@pytest.fixture(scope="session")
def figures() -> _figures.Figures:
    return _figures.Figures()


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: its figure lines go to the controlling process
        workeroutput["vexora_figures"] = list(_figures.LINES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    _figures.LINES.extend(getattr(node, "workeroutput", {}).get("vexora_figures", []))


def pytest_terminal_summary(terminalreporter):
    _figures.report(terminalreporter)


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

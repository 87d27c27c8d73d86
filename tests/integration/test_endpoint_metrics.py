"""Issue 22: ``vexora_webhook_endpoints{state}`` shows failing and disabled endpoints (the
``VexoraWebhookEndpointDisabled`` alert and the dashboard read it). Real Redis, a real verifying
receiver, the real dispatcher and deliverer."""

from __future__ import annotations

import threading

import pytest
import requests

from worker.ops.metrics import ENDPOINT_STATES, StoreCollector
from worker.sandbox.receiver import make_receiver
from worker.store.jobs import JobStore
from worker.webhooks.delivery import Deliverer
from worker.webhooks.endpoints import Endpoints
from worker.webhooks.outbox import Dispatcher
from worker.webhooks.signing import new_secret
from tests.integration.conftest import prefixed_client
from tests.support.stack import payload

pytestmark = pytest.mark.integration

PREFIX = "endpoint-metrics-test"


@pytest.fixture
def client(redis_url):
    yield from prefixed_client(redis_url, PREFIX)


@pytest.fixture
def receivers():
    started = []

    def start():
        secret = new_secret()
        server = make_receiver("127.0.0.1", 0, secrets=[secret], path="/webhooks")
        threading.Thread(target=server.serve_forever, daemon=True).start()
        server.secret = secret
        started.append(server)
        return server
    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def _states(collector: StoreCollector) -> dict[str, float]:
    families = {f.name: f for f in collector.collect()}
    return {s.labels["state"]: s.value for s in families["vexora_webhook_endpoints"].samples}


def test_the_endpoints_health_is_a_metric(client, receivers):
    good, gone = receivers(), receivers()
    requests.post(gone.url + "/_receiver/faults", json={"fail_first": 1000, "status": 410}, timeout=5)
    endpoints = Endpoints(client, PREFIX, allow_private=True, rotation_grace=60)
    store = JobStore(client, prefix=PREFIX)
    collector = StoreCollector(store)
    assert _states(collector) == dict.fromkeys(ENDPOINT_STATES, 0)  # none yet: every state is 0

    endpoints.add(good.url + "/webhooks", secret=good.secret)
    endpoints.add(gone.url + "/webhooks", secret=gone.secret)
    endpoints.add("http://127.0.0.1:9/nobody")  # connection refused: retried, failing
    off = endpoints.add(good.url + "/webhooks", secret=good.secret)
    endpoints.set_enabled(off["id"], False, "disabled by the operator")
    assert _states(collector) == {"enabled": 3, "failing": 0, "disabled": 0, "disabled_by_operator": 1}

    sent: list[list[str]] = []
    dispatcher = Dispatcher(client, PREFIX, endpoints, sent.append, replay_seconds=3600)
    dispatcher.fan_out(1)
    store.create("EPMETRICS1", payload(tradeNo="EPMETRICS1"), contact={})
    assert store.flag("EPMETRICS1", "a test")  # a checkout.needs_review event for each enabled endpoint
    dispatcher.run()
    deliverer = Deliverer(dispatcher, endpoints, schedule=(300,), timeout=5, disable_after=10 ** 9,
                          allow_private=True)
    results = deliverer.deliver([m for batch in sent for m in batch])
    assert results == {"delivered": 1, "gone": 1, "retry": 1}, results
    # the 410 disabled its endpoint (a webhook.endpoint_disabled event went out; not delivered here)
    assert _states(collector) == {"enabled": 1, "failing": 1, "disabled": 1, "disabled_by_operator": 1}
    text = collector_text(collector)
    assert "127.0.0.1" not in text and "nobody" not in text  # never a URL as a label


def collector_text(collector: StoreCollector) -> str:
    from prometheus_client import CollectorRegistry, generate_latest
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()

"""A Node.js producer (celery-node, tests/node/enqueue.js) against the real worker and sandbox.

The requirement: "celery-node works as a producer against our broker". celery-node sends Celery
message protocol v2 with a minimal header set (``lang``, ``task``, ``id``) and the payload as
kwargs; Celery 5.7 accepts that, and the worker answers through the Redis result backend.
The npm packages come from the lockfile, installed into a temporary copy of tests/node/.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from worker.domain import states
from tests.support.node import HAVE_NODE, install_node_producer
from tests.support.stack import MARKERS, payload


pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not HAVE_NODE, reason="node and npm are needed for the Node.js producer test"),
]


@pytest.fixture(scope="module")
def node_producer(tmp_path_factory) -> Path:
    """tests/node/ copied to a temp dir with its locked dependencies installed (``npm ci``)."""
    workdir = install_node_producer(tmp_path_factory.mktemp("node-producer"))
    return workdir


def run_enqueue(workdir: Path, redis_url: str, job: dict, timeout: float = 30) -> subprocess.CompletedProcess:
    """``node enqueue.js '<payload json>'`` with REDIS_URL set, as the README shows it."""
    env = {**os.environ, "REDIS_URL": redis_url, "VEXORA_ENQUEUE_TIMEOUT": str(timeout)}
    return subprocess.run(["node", "enqueue.js", json.dumps(job, ensure_ascii=False)], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=timeout + 30)


def other_db(url: str) -> str:
    """The same Redis server, another database: a broker no worker consumes from."""
    parts = urlsplit(url)
    db = parts.path.strip("/") or "0"
    return urlunsplit(parts._replace(path="/15" if db != "15" else "/14"))


def test_celery_node_sends_a_protocol_v2_message(node_producer, redis_url, tmp_path):
    """With no worker on the broker, the message stays on the ``checkout`` list: look at it."""
    url = other_db(redis_url)
    broker = redis.Redis.from_url(url)
    broker.flushdb()
    try:
        job = payload()
        done = run_enqueue(node_producer, url, job, timeout=1)
        assert done.returncode == 3, (done.stdout, done.stderr)
        assert "no answer from a worker within 1" in done.stderr and done.stdout == ""
        raw = broker.lrange("checkout", 0, -1)
    finally:
        broker.flushdb()
    assert len(raw) == 1
    (tmp_path / "celery-node-message.json").write_bytes(raw[0])  # kept for docs/producers.md
    message = json.loads(raw[0])
    assert message["content-type"] == "application/json" and message["content-encoding"] == "utf-8"
    headers, properties = message["headers"], message["properties"]
    assert headers["task"] == "vexora.checkout.enqueue" and headers["id"]  # protocol v2: task in headers
    assert properties["body_encoding"] == "base64"
    assert properties["delivery_info"] == {"exchange": "", "routing_key": "checkout"}
    assert properties["delivery_tag"]
    args, kwargs, embed = json.loads(base64.b64decode(message["body"]))
    assert args == [] and kwargs == job and embed == {}


def test_node_producer_enqueues_a_checkout_that_reaches_paying(node_producer, stack):
    job = payload()
    done = run_enqueue(node_producer, stack.settings.redis_url, job)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert done.stdout.strip() == job["tradeNo"]

    record = stack.wait_state(job["tradeNo"], states.PAYING)
    assert record["paymentLink"].startswith(stack.sandbox_url + "/cashier/")
    assert stack.sent(job["tradeNo"])["created"] == 1
    assert stack.sent(job["tradeNo"])["duplicates"] == 0
    # the payload travelled on the broker, but the worker shows only the tradeNo in its logs
    logs = stack.logs()
    assert job["tradeNo"] in logs
    for value in MARKERS.values():
        assert value not in logs


def test_node_producer_invalid_field_ends_rejected_and_is_never_sent(node_producer, stack):
    job = payload(email="not-an-email")
    done = run_enqueue(node_producer, stack.settings.redis_url, job)
    # the job is stored, so the producer gets its tradeNo; validation then rejects it
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert done.stdout.strip() == job["tradeNo"]

    record = stack.wait_state(job["tradeNo"], states.REJECTED)
    assert "email" in record["errors"], record["errors"]
    assert stack.sent(job["tradeNo"])["received"] == 0


def test_node_producer_reports_a_refused_job(node_producer, stack):
    """A tradeNo reused with another payload: the task answers tradeNo null, the script exits 1."""
    job = payload()
    assert run_enqueue(node_producer, stack.settings.redis_url, job).returncode == 0
    done = run_enqueue(node_producer, stack.settings.redis_url, {**job, "amount": "500"})
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert "refused: tradeNo is already used" in done.stderr and '"tradeNo"' in done.stderr
    stack.wait_state(job["tradeNo"], states.PAYING)
    assert stack.sent(job["tradeNo"])["created"] == 1


def test_node_producer_names_the_account_as_the_keyword_account(node_producer, stack):
    """``account`` among the keyword arguments is the job's merchant account (README "Accounts"):
    the deployment's own is taken and recorded; one it does not have is refused on that field."""
    job = payload()
    done = run_enqueue(node_producer, stack.settings.redis_url, {**job, "account": "default"})
    assert done.returncode == 0, done.stderr
    record = stack.wait_state(job["tradeNo"], states.PAYING)
    assert record["account"] == "default"
    other = payload()
    done = run_enqueue(node_producer, stack.settings.redis_url, {**other, "account": "no-such-shop"})
    assert done.returncode == 1 and '"account"' in done.stderr, (done.stdout, done.stderr)
    assert stack.record(other["tradeNo"]) is None and stack.sent(other["tradeNo"])["received"] == 0

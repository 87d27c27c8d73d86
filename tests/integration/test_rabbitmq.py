"""RabbitMQ as the broker (VEXORA_BROKER_URL=amqp://...), the job store still on Redis: a private
node (tests/support/rabbitmq.py), real Celery workers, the sandbox gateway.

The queues are quorum queues with their dead-letter arguments, publishes are confirmed, the
pipeline brings every job to its state with one create each, and a message delivered more often
than the delivery limit lands in its dead-letter queue — from where the reconciler (for a
checkout) or ``vexora-checkout dead-letters --requeue`` brings it back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import amqp
import pytest

from worker.celery import QUEUES, dead_letter_queue
from worker.domain import states
from worker.waiting import wait_until
from tests.reliability.support import FAST
from tests.support.processes import ROOT
from tests.support.stack import Stack, payload

pytestmark = pytest.mark.integration


def _vhost(rabbitmq) -> tuple[str, str]:
    name = "t-" + uuid.uuid4().hex[:8]
    return name, rabbitmq.vhost(name)


@pytest.fixture(scope="module")
def rabbit_stack(rabbitmq, redis_url, tmp_path_factory):
    vhost, url = _vhost(rabbitmq)
    s = Stack(redis_url, tmp_path_factory.mktemp("rabbit"), VEXORA_BROKER_URL=url).start(workers=2, concurrency=4)
    s.vhost = vhost
    try:
        yield s
    finally:
        s.stop()


def test_the_queues_are_quorum_queues_that_dead_letter(rabbit_stack, rabbitmq):
    queues = rabbitmq.queues(rabbit_stack.vhost)
    for name in QUEUES:
        assert queues[name]["type"] == "quorum", queues[name]
        args = _arguments(queues[name])
        assert args["x-delivery-limit"] == 10
        assert args["x-dead-letter-exchange"] == "vexora.dead"
        assert args["x-dead-letter-routing-key"] == name
        assert args["x-dead-letter-strategy"] == "at-least-once"
        assert args["x-overflow"] == "reject-publish"
        assert queues[dead_letter_queue(name)]["type"] == "classic"  # no delivery limit of its own


def test_publishes_are_confirmed(rabbit_stack):
    app = rabbit_stack.runtime.celery
    assert app.conf.broker_transport_options["confirm_publish"] is True
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)
        assert conn.transport.driver_type == "amqp"
        assert conn.connection.confirm_publish is True  # py-amqp: every publish waits for its ack


def test_pipeline_over_rabbitmq_every_job_paying_each_created_once(rabbit_stack):
    trade_nos = [rabbit_stack.enqueue(payload()) for _ in range(30)]
    rejected = rabbit_stack.enqueue(payload(email="not-an-email"))
    for trade_no in trade_nos:
        rabbit_stack.wait_state(trade_no, states.PAYING)
    rabbit_stack.wait_state(rejected, states.REJECTED)
    for trade_no in trade_nos:
        assert rabbit_stack.sent(trade_no) == {"received": 1, "created": 1, "duplicates": 0, "faults": 0}
    assert rabbit_stack.sent(rejected)["received"] == 0
    # a paid callback, applied through the callbacks queue
    rabbit_stack.runtime.send("vexora.callback.process", rabbit_stack.callback_fields(trade_nos[0]))
    rabbit_stack.wait_state(trade_nos[0], states.SUCCEEDED)


def test_workers_answer_remote_control_over_rabbitmq(rabbit_stack):
    """``celery inspect ping`` (the compose health check) and Flower use fanout exchanges."""
    name = next(p.worker_name for p in rabbit_stack.processes if getattr(p, "worker_name", None))
    done = subprocess.run([sys.executable, "-m", "celery", "-A", "worker", "inspect", "ping", "-d", name,
                           "--timeout", "5"], env=rabbit_stack.env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pong" in done.stdout


def test_a_message_over_the_delivery_limit_is_dead_lettered_then_redriven(rabbitmq, redis_url, tmp_path):
    """A submit message returned unacknowledged more often than the limit (here: a consumer that
    rejects it) is dead-lettered, not dropped; the job stays ``queued``, and the reconciler
    re-drives it once it is older than ``VEXORA_QUEUED_REDRIVE_AFTER``. The dead letter itself is
    listed by ``vexora-checkout dead-letters`` and can be put back."""
    vhost, url = _vhost(rabbitmq)
    stack = Stack(redis_url, tmp_path, VEXORA_BROKER_URL=url, VEXORA_BROKER_DELIVERY_LIMIT="2",
                  **{**FAST, "VEXORA_QUEUED_REDRIVE_AFTER": "3"})
    try:
        stack.start(workers=0)
        # the queues exist once a worker declared them; one on the other queues only
        stack.start_worker(concurrency=2, queues="callbacks,reconcile,webhooks")
        trade_no = stack.enqueue(payload())
        rejected = _reject_until_dead(rabbitmq.port, vhost, "checkout")
        assert json.loads(rejected)[0] == [trade_no]  # the submit message's args
        wait_until(lambda: rabbitmq.queues(vhost)["checkout.dead"]["messages"] == 1, timeout=30,
                   what="the message in checkout.dead")
        assert stack.record(trade_no)["state"] == states.QUEUED

        listed = _cli(stack, "dead-letters")
        assert listed.returncode == 0, listed.stderr
        assert "checkout.dead: 1" in listed.stdout and "delivery_limit" in listed.stdout
        assert "vexora.checkout.submit=1" in listed.stdout and trade_no not in listed.stdout  # names, not bodies

        # the reconciler (beat + a worker on the checkout queue) brings the job to paying
        stack.start_worker(concurrency=2, queues="checkout")
        stack.start_beat()
        stack.wait_state(trade_no, states.PAYING, timeout=60)
        assert stack.sent(trade_no)["created"] == 1

        requeued = _cli(stack, "dead-letters", "--requeue")
        assert requeued.returncode == 0, requeued.stderr
        assert "requeued 1" in requeued.stdout
        wait_until(lambda: rabbitmq.queues(vhost)["checkout"]["messages"] == 0
                   and rabbitmq.queues(vhost)["checkout.dead"]["messages"] == 0, timeout=30,
                   what="the requeued message consumed")
        # the requeued submit found the job at paying: nothing sent twice
        assert stack.sent(trade_no) == {"received": 1, "created": 1, "duplicates": 0, "faults": 0}
    finally:
        stack.stop()
        rabbitmq.ctl("delete_vhost", vhost, check=False)


def _reject_until_dead(port: int, vhost: str, queue: str) -> str:
    """Take the next message of ``queue`` and reject it (requeue) until RabbitMQ dead-letters it;
    the body it carried."""
    conn = amqp.Connection(f"127.0.0.1:{port}", userid="guest", password="guest", virtual_host=vhost)
    conn.connect()
    try:
        channel = conn.channel()
        body = None

        def take():
            nonlocal body
            message = channel.basic_get(queue)
            if message is None:
                return body is not None  # gone from the queue after at least one delivery
            body = message.body.decode() if isinstance(message.body, bytes) else message.body
            channel.basic_reject(message.delivery_tag, requeue=True)
            return False
        wait_until(take, timeout=30, interval=0.05, what=f"a message of {queue} dead-lettered")
        return body
    finally:
        conn.close()


def _cli(stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], env=stack.env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def _arguments(queue: dict) -> dict:
    """rabbitmqctl's JSON gives arguments as [name, type, value] lists (3.x) or a dict."""
    args = queue["arguments"]
    return {a[0]: a[-1] for a in args} if isinstance(args, list) else args


def test_flower_follows_the_workers_over_rabbitmq(rabbit_stack):
    """Flower with the RabbitMQ broker: it lists the workers (remote control over the fanout
    exchanges) and shows the tasks they run (task events, sent without publisher confirms)."""
    from tests.support.flower import Flower
    flower = Flower(rabbit_stack)
    flower.wait_up()
    names = [p.worker_name for p in rabbit_stack.processes if getattr(p, "worker_name", None)]
    for name in names:
        flower.wait_for_worker(name)
    trade_no = rabbit_stack.enqueue(payload())
    rabbit_stack.wait_state(trade_no, states.PAYING)
    flower.wait_tasks(lambda tasks: any(t.get("name") == "vexora.checkout.submit" and t.get("state") == "SUCCESS"
                                        and trade_no in str(t.get("args")) for t in tasks.values()), timeout=30)

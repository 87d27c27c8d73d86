"""Redis stopped and restarted (AOF on): the web app answers 503 meanwhile, the gateway's resend
succeeds once Redis is back, and workers and web reconnect by themselves."""

from __future__ import annotations

import pytest
import requests

from worker.domain import states
from worker.local.redis_server import RedisServer
from worker.waiting import wait_until
from tests.support.stack import Stack, payload

pytestmark = pytest.mark.integration


@pytest.fixture
def outage(tmp_path):
    server = RedisServer(appendonly=True, data_dir=str(tmp_path / "redis")).start()
    # a resend schedule of 0.4 s, 1 s, 2 s, 6 s, then 12 min: room for a restart in between
    stack = Stack(server.url, tmp_path, time_factor=0.2).start(web=True)
    try:
        yield stack, server
    finally:
        stack.stop()
        server.cleanup()


def callbacks_of(stack, trade_no):
    answer = stack.http.get(stack.sandbox_url + "/_sandbox/callbacks", timeout=5).json()
    return [c for c in answer["callbacks"] if c["tradeNo"] == trade_no]


def test_callbacks_during_an_outage_get_503_and_succeed_on_the_gateway_resend(outage):
    stack, server = outage
    trade_no = stack.enqueue(payload())
    stack.wait_state(trade_no, states.PAYING)

    server.stop()
    assert stack.http.get(stack.web_url + "/healthz", timeout=10).status_code == 503
    stack.set_gateway_status(trade_no, "0000")
    wait_until(lambda: any(c["last_status"] == 503 for c in callbacks_of(stack, trade_no)),
               timeout=20, what="the web app to answer 503")

    restarted = RedisServer(port=server.port, appendonly=True, data_dir=server.data_dir).start()
    try:
        record = stack.wait_state(trade_no, states.SUCCEEDED, timeout=60)
        assert record["paymentLink"]  # the job survived the restart (AOF)
        delivered = callbacks_of(stack, trade_no)[0]
        assert delivered["delivered"] and delivered["attempts"] >= 2
        assert requests.get(stack.web_url + "/healthz", timeout=10).status_code == 200
        # the worker reconnected by itself: a new job goes all the way
        again = stack.enqueue(payload())
        stack.wait_state(again, states.PAYING, timeout=60)
    finally:
        restarted.stop()

"""``GET /_sandbox/totals``: the sandbox's totals alone, the same as ``/_sandbox/stats``' but
without the per-``tradeNo`` counters (what the benchmarks poll for the count of created orders)."""

from __future__ import annotations

import threading

import pytest
import requests

from tests.integration.test_sandbox import MERCHANT, PUBLIC_URL, SECRET, TIMEOUT, checkout, checkout_body
from worker.sandbox import make_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def base():
    srv = make_server(merchant_no=MERCHANT, app_secret=SECRET, public_url=PUBLIC_URL)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def totals(base) -> dict:
    reply = requests.get(f"{base}/_sandbox/totals", timeout=TIMEOUT)
    assert reply.status_code == 200
    return reply.json()


def test_totals_count_created_duplicates_and_refusals_like_stats(base):
    requests.post(f"{base}/_sandbox/reset", timeout=TIMEOUT).raise_for_status()
    assert totals(base) == {"totals": {"received": 0, "created": 0, "duplicates": 0, "faults": 0,
                                       "queries": 0, "query_faults": 0}}
    first = checkout_body()
    assert checkout(base, first).json()["code"] == "0000"
    assert checkout(base, checkout_body()).json()["code"] == "0000"
    assert checkout(base, first).json()["code"] == "8000"  # the same tradeNo again
    assert checkout(base, {**checkout_body(), "sign": "0" * 32}).json()["code"] == "8000"
    got = totals(base)["totals"]
    assert got == {"received": 4, "created": 2, "duplicates": 1, "faults": 0, "queries": 0, "query_faults": 0}
    stats = requests.get(f"{base}/_sandbox/stats", timeout=TIMEOUT).json()
    assert stats["totals"] == got and len(stats["checkout"]) == 3


def test_totals_stay_one_small_answer_however_many_orders(base):
    for _ in range(30):
        checkout(base, checkout_body())
    reply = requests.get(f"{base}/_sandbox/totals", timeout=TIMEOUT)
    assert len(reply.content) < 200
    assert requests.delete(f"{base}/_sandbox/totals", timeout=TIMEOUT).status_code == 404

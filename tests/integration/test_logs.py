"""Structured logs from the real processes: a Celery worker and the web app under gunicorn (with
gunicorn.conf.py, as deployed) write nothing but lines of the chosen format for a job's whole life
— enqueued over HTTP, submitted, paid by the gateway's callback — and the events carry their fields.

Read while the processes run: at shutdown Celery's signal handler writes its own
``worker: Warm shutdown (MainProcess)`` straight to stdout, which no logging setting reaches.
"""

from __future__ import annotations

import pytest
import requests

from worker.domain import states
from worker.waiting import wait_until
from tests.support.loglines import parse_line
from tests.support.stack import APP_SECRET, MARKERS, Stack, payload

pytestmark = pytest.mark.integration

TOKEN = "logs-test-token"
QUERY_MARKER = "query-marker-5d1e"
HEADER_MARKER = "header-marker-9b2c"


def lines_of(proc, fmt: str) -> list[dict]:
    text = proc.log()
    assert text.endswith("\n"), text[-300:]
    return [parse_line(line, fmt) for line in text[:-1].split("\n")]


@pytest.mark.parametrize("fmt", ["json", "logfmt"])
def test_worker_and_web_write_only_lines_of_the_format(redis_url, tmp_path, fmt):
    # "" is the default: logfmt
    stack = Stack(redis_url, tmp_path, VEXORA_LOG_FORMAT="json" if fmt == "json" else "",
                  VEXORA_API_TOKEN=TOKEN).start(workers=1, web=True)
    try:
        worker = next(p for p in stack.processes if getattr(p, "worker_name", None))
        web = next(p for p in stack.processes if p.name == "web")

        # a job's life: enqueued through the web's API, submitted by the worker, paid by callback
        answer = stack.http.post(stack.web_url + "/v1/checkouts", json=payload(),
                                 headers={"Authorization": f"Bearer {TOKEN}"}, timeout=15)
        assert answer.status_code == 202, answer.text
        trade_no = answer.json()["tradeNo"]
        stack.wait_state(trade_no, states.PAYING)
        stack.set_gateway_status(trade_no, "0000")
        stack.wait_state(trade_no, states.SUCCEEDED)
        # a forged callback (the app's own warning) and a query string and header that an access
        # line must not show
        assert stack.notify(stack.callback(trade_no, secret="not-the-secret")).status_code == 401
        assert requests.get(f"{stack.web_url}/healthz?probe={QUERY_MARKER}", timeout=5,
                            headers={"Authorization": f"Bearer {HEADER_MARKER}"}).status_code == 200

        def access(path: str, status: int) -> bool:
            return any(f["event"] == "request" and f["path"] == path and str(f["status"]) == str(status)
                       for f in lines_of(web, fmt))
        # gunicorn writes the access line after the answer has left
        wait_until(lambda: access("/healthz", 200) and access("/vexora/notify", 401), timeout=10,
                   what="the access lines")

        worker_lines, web_lines = lines_of(worker, fmt), lines_of(web, fmt)  # every line parses

        def events(lines, name, **wanted):
            return [f for f in lines if f["event"] == name
                    and all(str(f.get(k)) == str(v) for k, v in wanted.items())]

        moves = [(f["from"], f["to"]) for f in events(worker_lines, "state_change", tradeNo=trade_no)]
        # the claim (queued -> submitting) is a step of the submit: its line only at DEBUG
        assert moves == [("submitting", "paying"), ("paying", "succeeded")]
        paying = events(worker_lines, "state_change", tradeNo=trade_no, to="paying")[0]
        assert paying["logger"] == "vexora.store" and paying["level"] == "info"
        assert str(paying["attempt"]) == "1" and float(paying["latencyMs"]) > 0
        assert paying["status"] == "0015" and paying["reason"]
        if fmt == "json":
            assert paying["attempt"] == 1  # a number in JSON
        assert events(worker_lines, "worker_starting", hostname=worker.worker_name)
        assert any(f["logger"].startswith("celery.") for f in worker_lines)  # Celery's own, same shape
        # but not its line per task received and succeeded (VEXORA_LOG_TASKS): Flower has those
        assert not [f for f in worker_lines if f["logger"] in ("celery.app.trace", "celery.worker.strategy")]
        assert all(f["timestamp"].endswith("Z") for f in worker_lines + web_lines)

        # the web app's own lines reach gunicorn's output, INFO included (the producer API stored
        # the job: its state change is logged in the web process)
        queued = events(web_lines, "state_change", tradeNo=trade_no, to="queued")
        assert queued and queued[0]["level"] == "info" and queued[0]["from"] == "new"
        assert events(web_lines, "callback_refused", reason="invalid signature")[0]["level"] == "warning"
        assert events(web_lines, "request", method="POST", path="/vexora/notify", status=200)
        assert any(f["logger"] == "gunicorn.error" for f in web_lines)

        text = worker.log() + web.log()
        for marker in (APP_SECRET, QUERY_MARKER, HEADER_MARKER, TOKEN, *MARKERS.values()):
            assert marker not in text, marker
    finally:
        stack.stop()

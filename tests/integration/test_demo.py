"""The README's first command: the demo runs the whole life of a batch and leaves nothing behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from worker.waiting import wait_until

pytestmark = pytest.mark.integration


def demo_env() -> tuple[dict, str]:
    marker = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "VEXORA_BASE_URL"}}
    env.update({"VEXORA_DEMO_TEST_MARKER": marker, "COLUMNS": "120", "PYTHONUNBUFFERED": "1"})
    return env, marker


def processes_with(marker: str) -> list[int]:
    """Live processes whose environment carries the marker (every child of the demo inherits it)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_the_demo_settles_every_job_and_stops_every_process():
    env, marker = demo_env()
    size = 20
    done = subprocess.run([sys.executable, "-m", "worker.cli", "demo", "--size", str(size), "--timeout", "150"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "every job ended as planned" in out and "created twice at the gateway: 0" in out
    for line in ("succeeded", "failed", "partially_paid", "rejected", "time to payment link: p50"):
        assert line in out
    # the merchant's side: what the demo's verifying receiver got (issue 12)
    webhooks = re.search(r"webhooks verified: (\d+), retried: (\d+) \(duplicates (\d+)\)", out)
    assert webhooks, out[-3000:]
    assert int(webhooks.group(1)) >= size, out[-3000:]  # at least each job's final state
    assert "refused (signature not verified)" not in out and "no verified webhook" not in out
    # two accounts (README "Accounts"), each with its key and operator login printed
    assert "split between the accounts default and shop-b" in out
    assert len(re.findall(r"(?m)^  (default|shop-b): API key vxk_key_[0-9a-f]+_[0-9a-f]+$", out)) == 2, out[-2000:]
    assert len(re.findall(r"/ops login http://127\.0\.0\.1:\d+/ops/login  name (default|shop-b)-operator  "
                          r"password \S+", out)) == 2, out[-2000:]
    wait_until(lambda: not processes_with(marker), timeout=20, what="every demo process to exit")


def test_ctrl_c_stops_everything():
    env, marker = demo_env()
    # as a terminal starts it: a test run launched in the background (`cmd &` in a script) inherits
    # SIGINT ignored, and Python then installs no KeyboardInterrupt handler
    demo = subprocess.Popen([sys.executable, "-m", "worker.cli", "demo", "--size", "20"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        seen = ""
        for line in iter(demo.stdout.readline, ""):
            seen += line
            if "enqueued" in line:
                break
        assert "enqueued" in seen, seen
        demo.send_signal(signal.SIGINT)
        demo.communicate(timeout=60)
    finally:
        demo.kill()
    assert demo.returncode == 130
    wait_until(lambda: not processes_with(marker), timeout=20, what="every demo process to exit")


def test_the_webhook_line_when_none_or_some_arrive():
    """No sender, or a slow one: the summary says what arrived and what did not; nothing fails."""
    import base64
    import json
    import threading
    from datetime import datetime, timezone

    import requests
    from standardwebhooks.webhooks import Webhook

    from worker.local.demo import _await_webhooks, _webhook_lines, build_plan
    from worker.sandbox.receiver import make_receiver

    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    receiver = make_receiver("127.0.0.1", 0, secrets=[secret])
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        plans = build_plan(20, seed=1)
        records = {p.payload["tradeNo"]: {"state": p.expect} for p in plans}
        lines = _webhook_lines(_await_webhooks(receiver.url, plans, records, timeout=0.3), len(plans))
        assert lines[0] == "webhooks verified: 0, retried: 0 (duplicates 0)"
        assert "no webhook reached the receiver" in lines[1] and len(lines) == 2

        trade_no, state = plans[0].payload["tradeNo"], plans[0].expect
        body = json.dumps({"type": f"checkout.{state}", "data": {"tradeNo": trade_no, "state": state}}).encode()
        now = datetime.now(timezone.utc)
        headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": Webhook(secret).sign("msg_1", now, body.decode())}
        receiver.inbox.set_faults({"fail_first": 1})
        for expected in (503, 204, 204):  # failed once, then delivered, then delivered again
            assert requests.post(receiver.webhook_url, data=body, headers=headers, timeout=5).status_code == expected
        lines = _webhook_lines(_await_webhooks(receiver.url, plans, records, timeout=0.3), len(plans))
        assert lines[0] == "webhooks verified: 2, retried: 2 (duplicates 1)"
        assert lines[1].startswith("[yellow]19 of 20 jobs had no verified webhook") and trade_no not in lines[1]
    finally:
        receiver.shutdown()
        receiver.server_close()

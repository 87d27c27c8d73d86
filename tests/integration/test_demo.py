"""The README's first command: the demo runs the whole life of a batch and leaves nothing behind."""

from __future__ import annotations

import os
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
    done = subprocess.run([sys.executable, "-m", "worker.cli", "demo", "--size", "20", "--timeout", "150"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "every job ended as planned" in out and "created twice at the gateway: 0" in out
    for line in ("succeeded", "failed", "partially_paid", "rejected", "time to payment link: p50"):
        assert line in out
    wait_until(lambda: not processes_with(marker), timeout=20, what="every demo process to exit")


def test_ctrl_c_stops_everything():
    env, marker = demo_env()
    demo = subprocess.Popen([sys.executable, "-m", "worker.cli", "demo", "--size", "20"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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

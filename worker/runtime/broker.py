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

And one saving: while a queue has a backlog, a message is taken and registered as
unacknowledged in one Lua step (``worker/store/lua/broker_take.lua``) instead of kombu's BRPOP
followed by a MULTI/EXEC of ZADD + HSET: one round trip a message less (two a job: the submit
and the callback), the entry written is kombu's own, so its restore of unacknowledged messages
(visibility timeout, shutdown) and its acknowledgement work unchanged — and no crash can fall
between taking a message and registering it. When the step finds every queue empty, the
consumer goes back to a blocking BRPOP (kombu's path, untouched) until a message arrives.
"""

from __future__ import annotations

from time import monotonic

import redis
from kombu.exceptions import ChannelError
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads
from queue import Empty

from worker.store import scripts

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


class QoS(kombu_redis.QoS):
    """kombu's QoS; a message the take step registered already is only noted in memory."""

    def append(self, message, delivery_tag):
        if delivery_tag is not None and delivery_tag == getattr(self.channel, "_registered_tag", None):
            virtual.QoS.append(self, message, delivery_tag)
            return
        super().append(message, delivery_tag)


class _TakeInOneStep:
    """BRPOP + registering as unacknowledged in one Lua step while the queues have a backlog."""

    QoS = QoS
    _take_next = False  # the last fetch found a message: try the one-step take first
    _taking = False  # the command in flight is the take step (else kombu's BRPOP)
    _registered_tag = None  # the delivery tag the take step registered, while it is delivered

    def _brpop_start(self, timeout=None):
        if not self._take_next or self.global_keyprefix:
            self._taking = False
            return super()._brpop_start(timeout)
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        keys = [self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]
        self._in_poll = self.client.connection
        self._brpop_sent_at = monotonic()
        self._taking = True
        self.client.connection.send_command("EVAL", scripts.source("broker_take"), len(keys) + 2, *keys,
                                            self.unacked_key, self.unacked_index_key)

    def _brpop_read(self, **options):
        if not self._taking:
            delivered = super()._brpop_read(**options)  # Empty when BRPOP timed out
            self._take_next = True
            return delivered
        try:
            try:
                reply = self.client.parse_response(self.client.connection, "EVAL", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            except (redis.exceptions.ResponseError, ChannelError):
                reply = None  # e.g. a demoted master: BRPOP next, as kombu would
            if not reply:
                self._take_next = False
                raise Empty()
            dest, item = reply
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            message = loads(bytes_to_str(item))
            self._registered_tag = message["properties"]["delivery_tag"]
            try:
                self.connection._deliver(message, dest)
            finally:
                self._registered_tag = None
            return True
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()


class Channel(_Repairs, _TakeInOneStep, kombu_redis.Channel):
    pass


class SentinelChannel(_Repairs, _TakeInOneStep, kombu_redis.SentinelChannel):
    """The channel when REDIS_URL lists Sentinels: its pool asks them for the master, and a
    connection to a demoted master (READONLY) is dropped and made again to the new one."""


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel

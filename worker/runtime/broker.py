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

The acknowledgements made while the take step runs (a task's thread acknowledging its message)
are written by the next take, in the same round trip: one round trip a message less again. An
acknowledgement is then in Redis a message later (a few ms under load); a worker killed in
between has its message restored after the visibility timeout, and its task finds its work done
(the lease, the forward-only moves), as for a worker killed just before acknowledging. Once
the queues are empty the consumer writes what is left before it waits on BRPOP, and a closing
channel before kombu restores its unacknowledged messages.

And one repair of the thread pool's pace: with late acknowledgement a task's thread acknowledges
its message itself, and when that frees the last prefetch slot nothing told the consumer's event
loop, which slept until its next timer (up to 0.1 s, the task-event flush) before fetching the
next message: a third of a worker's threads sat idle at 100 ms gateway latency (BENCHMARKS.md
§1, "threads busy"). The acknowledgement that frees a full prefetch window now wakes the loop
(one byte on a pipe the loop reads), and the next message is fetched at once.
"""

from __future__ import annotations

import json
import os
import threading
from time import monotonic

import redis
from kombu.exceptions import ChannelError
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
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
    """kombu's QoS; a message the take step registered already is only noted in memory; while
    the take step runs, an acknowledgement is written by the next take; and an acknowledgement
    that frees a full prefetch window wakes the consumer's event loop."""

    def ack(self, delivery_tag):
        was_full = not self.can_consume()
        if not self.channel._defer_ack(delivery_tag):
            super().ack(delivery_tag)
        else:
            virtual.QoS.ack(self, delivery_tag)  # done in memory; in Redis with the next take
        if was_full:
            wake = getattr(self.channel.connection, "wake_event_loop", None)
            if wake is not None:
                wake()

    def append(self, message, delivery_tag):
        if delivery_tag is not None and delivery_tag == getattr(self.channel, "_registered_tag", None):
            virtual.QoS.append(self, message, delivery_tag)
            return
        super().append(message, delivery_tag)


class _TakeInOneStep:
    """BRPOP + registering as unacknowledged in one Lua step while the queues have a backlog;
    the acknowledgements made meanwhile are written by that same step."""

    QoS = QoS
    _take_next = False  # the last fetch found a message: try the one-step take first
    _taking = False  # the command in flight is the take step (else kombu's BRPOP)
    _registered_tag = None  # the delivery tag the take step registered, while it is delivered

    def __init__(self, *args, **kwargs):
        self._ack_lock = threading.Lock()
        self._acks_due: list[str] = []  # acknowledged, not yet removed from Redis
        self._acks_sent: list[str] = []  # those the take step in flight removes
        super().__init__(*args, **kwargs)

    def _defer_ack(self, delivery_tag) -> bool:
        """From a task's thread: leave the acknowledgement to the next take step, if one comes
        (the queues have a backlog); False: write it now, as kombu does."""
        if delivery_tag is None or self.global_keyprefix:
            return False
        with self._ack_lock:
            if not self._take_next:
                return False
            self._acks_due.append(delivery_tag)
            return True

    def _acks_to_write(self) -> list[str]:
        with self._ack_lock:
            acks, self._acks_due = self._acks_due, []
            return acks

    def _write_acks(self, acks: list[str]) -> None:
        """kombu's acknowledgement (the unacked entry and its index), for several at once."""
        if not acks:
            return
        try:
            with self.conn_or_acquire() as client:
                with client.pipeline() as pipe:
                    for tag in acks:
                        pipe.zrem(self.unacked_index_key, tag).hdel(self.unacked_key, tag)
                    pipe.execute()
        except Exception:
            with self._ack_lock:  # kept for the next try
                self._acks_due[:0] = acks
            raise

    def _brpop_start(self, timeout=None):
        if not self._take_next or self.global_keyprefix:
            self._taking = False
            # a backlog's last acknowledgements first: a blocked BRPOP must not hold them back
            self._write_acks(self._acks_to_write())
            return super()._brpop_start(timeout)
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        keys = [self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]
        self._in_poll = self.client.connection
        self._brpop_sent_at = monotonic()
        self._taking = True
        self._acks_sent = self._acks_to_write()
        self.client.connection.send_command("EVAL", scripts.source("broker_take"), len(keys) + 2, *keys,
                                            self.unacked_key, self.unacked_index_key, *self._acks_sent)

    def _brpop_read(self, **options):
        if not self._taking:
            delivered = super()._brpop_read(**options)  # Empty when BRPOP timed out
            with self._ack_lock:
                self._take_next = True
            return delivered
        try:
            try:
                reply = self.client.parse_response(self.client.connection, "EVAL", **options)
            except self.connection_errors:
                self._redo_acks()
                self.client.connection.disconnect()
                raise
            except (redis.exceptions.ResponseError, ChannelError):
                self._redo_acks()
                reply = None  # e.g. a demoted master: BRPOP next, as kombu would
            if not reply:
                with self._ack_lock:
                    self._take_next = False
                raise Empty()
            dest, item = reply
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            # the envelope is plain JSON (kombu's own loads builds a decoder per call)
            message = json.loads(item)
            self._registered_tag = message["properties"]["delivery_tag"]
            try:
                self.connection._deliver(message, dest)
            finally:
                self._registered_tag = None
            return True
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()

    def basic_cancel(self, consumer_tag):
        # no take follows for a cancelled queue: what it acknowledged is written now, and the
        # acknowledgements of its tasks still running are written as they come
        with self._ack_lock:
            self._take_next = False
        self._write_acks(self._acks_to_write())
        return super().basic_cancel(consumer_tag)

    def _redo_acks(self) -> None:
        # the step may not have run: its acknowledgements go with the next one (removing an
        # entry twice is harmless)
        with self._ack_lock:
            self._acks_due[:0] = self._acks_sent

    def close(self):
        # acknowledged is acknowledged: written before kombu gives the unacknowledged back
        try:
            self._write_acks(self._acks_to_write())
        except Exception:  # noqa: BLE001 - Redis gone: the messages come back after the
            pass           # visibility timeout, and their tasks find their work done
        super().close()


class Channel(_Repairs, _TakeInOneStep, kombu_redis.Channel):
    pass


class SentinelChannel(_Repairs, _TakeInOneStep, kombu_redis.SentinelChannel):
    """The channel when REDIS_URL lists Sentinels: its pool asks them for the master, and a
    connection to a demoted master (READONLY) is dropped and made again to the new one."""


class _Waker:
    """A pipe the event loop reads: a thread that frees a prefetch slot writes one byte to it."""

    _wake_fds: tuple[int, int] | None = None

    def register_with_event_loop(self, connection, loop):
        super().register_with_event_loop(connection, loop)
        if self._wake_fds is None:
            read_fd, write_fd = os.pipe()
            os.set_blocking(read_fd, False)
            os.set_blocking(write_fd, False)
            self._wake_fds = (read_fd, write_fd)
        loop.add_reader(self._wake_fds[0], self._drain_wakes)
        # a safety net: acknowledgements left to a take step that does not come (a pause in
        # consuming) are written within a second
        loop.call_repeatedly(1.0, self._write_left_acks)

    def _write_left_acks(self) -> None:
        for channel in list(getattr(self, "channels", ()) or ()):
            write = getattr(channel, "_write_acks", None)
            if write is not None:
                try:
                    write(channel._acks_to_write())
                except Exception:  # noqa: BLE001 - the broker is down: the next pass (or the
                    pass           # visibility timeout) takes care of them

    def _drain_wakes(self, *_args) -> None:
        try:
            while os.read(self._wake_fds[0], 512):
                pass
        except (BlockingIOError, OSError):
            pass  # drained; the loop's tick that follows polls the queues again

    def wake_event_loop(self) -> None:
        fds = self._wake_fds
        if fds is not None:
            try:
                os.write(fds[1], b"!")
            except (BlockingIOError, OSError):
                pass  # the pipe is full: the loop is woken already


class Transport(_Waker, kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(_Waker, kombu_redis.SentinelTransport):
    Channel = SentinelChannel

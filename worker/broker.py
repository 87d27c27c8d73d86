"""The Redis broker transport, with one repair: a channel whose connection is gone says so with
a connection error.

With kombu 5.7, when Redis goes away the consumer closes its channel, and the channel forgets its
connection. Work still holding that channel — restoring unacknowledged messages during the close,
or a task thread acknowledging, rejecting or publishing — then rebuilds a connection pool from
the missing connection and raises ``AttributeError``. Celery treats that as unrecoverable and the
worker exits instead of reconnecting. Raised as a ``redis`` ``ConnectionError`` instead, it is what
Celery and kombu expect from a lost broker: logged, and the worker reconnects. A message whose
acknowledgement was lost this way is redelivered after the visibility timeout; the lease keeps
that second delivery from sending anything twice.
"""

from __future__ import annotations

import redis
from kombu.transport import redis as kombu_redis

__all__ = ["Transport"]


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict:
        if self.connection is None or self.connection.client is None:
            raise redis.exceptions.ConnectionError("broker channel closed: its connection was lost")
        return super()._connparams(asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel

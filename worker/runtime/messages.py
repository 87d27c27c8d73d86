"""Celery task messages written straight into the Redis broker's list, for the hot paths that
already make a round trip to that Redis (a Lua step of the store, a pipeline of a batch).

``celery.send_task`` costs ~0.45 ms of CPU and a round trip of its own per message (routing,
header building, kombu's producer, a ``LPUSH``; BENCHMARKS.md §3). When the broker is the job
store's Redis, the message can instead be one more argument of the store's own Lua step (the
create script pushes it in the same atomic step that stores the job) or one more command of a
pipeline: no round trip more, and a job and its message are written together or not at all.

The message is exactly what Celery 5 (task protocol 2) and kombu's Redis transport put there —
``tests/integration/test_task_messages.py`` compares it field by field with a real
``send_task`` and has a real worker run it — so workers cannot tell the two apart: JSON
serializer, base64 body, a fresh task id and delivery tag, the producer's ``origin``, priority
0 (kombu's list for priority 0 is the queue's own name: ``Keys.broker_queue``), ``ignore_result`` set. No
``task-sent`` event is sent, as with ``send_task`` here (``task_send_sent_event=False``).

Only for a Redis broker that is the store's Redis (``Runtime.direct_messages``); with RabbitMQ,
or a broker elsewhere, the callers fall back to ``send_task``.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Mapping, Sequence

from celery.utils.nodenames import anon_nodename

__all__ = ["TaskMessages"]

_EMBED = ', {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]'

# The envelope as json.dumps writes it, its varying parts filled in (each already JSON): a
# message costs one ``os.urandom`` and two ``json.dumps`` of the arguments, not a dict tree
# dumped whole and two uuid4 calls (a fifth of the web app's CPU per callback went there).
_ENVELOPE = (
    '{"body": "%s", "content-encoding": "utf-8", "content-type": "application/json", '
    '"headers": {"lang": "py", "task": %s, "id": "%s", "shadow": null, "eta": null, "expires": null, '
    '"group": null, "group_index": null, "retries": 0, "timelimit": [null, null], "root_id": "%s", '
    '"parent_id": null, "argsrepr": %s, "kwargsrepr": %s, "origin": %s, "ignore_result": true, '
    '"replaced_task_nesting": 0, "stamped_headers": null, "stamps": {}}, '
    '"properties": {"correlation_id": "%s", "reply_to": %s, "delivery_mode": 2, '
    '"delivery_info": {"exchange": "", "routing_key": %s}, "priority": 0, "body_encoding": "base64", '
    '"delivery_tag": "%s"}}')


def _two_uuid4() -> tuple[str, str]:
    """Two random (version 4) UUIDs from one read of the system's random source."""
    raw = os.urandom(32)
    return str(uuid.UUID(bytes=raw[:16], version=4)), str(uuid.UUID(bytes=raw[16:], version=4))


class TaskMessages:
    """Builds task messages for one producer process (its ``origin`` and reply-to id)."""

    def __init__(self, reply_to: str, origin: str | None = None):
        self.reply_to = reply_to  # the app's thread oid, as send_task sets it
        self.origin = origin or anon_nodename()
        self._fixed = (json.dumps(self.origin), json.dumps(self.reply_to))
        self._names: dict[str, str] = {}  # a task's or a queue's name, as JSON

    def _json_name(self, name: str) -> str:
        found = self._names.get(name)
        if found is None:
            found = self._names[name] = json.dumps(name)
        return found

    def build(self, task: str, args: Sequence[object] = (), kwargs: Mapping[str, object] | None = None, *,
              queue: str, argsrepr: str | None = None, kwargsrepr: str | None = None) -> str:
        """The JSON text kombu's Redis transport would ``LPUSH`` for ``send_task(task, args,
        kwargs, ignore_result=True)`` routed to ``queue``. ``argsrepr``/``kwargsrepr`` replace
        the reprs shown by Flower and the logs (default: ``repr`` of the arguments, as Celery)."""
        task_id, delivery_tag = _two_uuid4()
        args, kwargs = list(args), dict(kwargs or {})
        body = ("[" + json.dumps(args) + ", " + json.dumps(kwargs) + _EMBED).encode()
        origin, reply_to = self._fixed
        return _ENVELOPE % (
            base64.b64encode(body).decode("ascii"), self._json_name(task), task_id, task_id,
            json.dumps(repr(args) if argsrepr is None else argsrepr),
            json.dumps(repr(kwargs) if kwargsrepr is None else kwargsrepr), origin,
            task_id, reply_to, self._json_name(queue), delivery_tag)

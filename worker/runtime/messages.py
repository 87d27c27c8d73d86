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
import uuid
from collections.abc import Mapping, Sequence

from celery.utils.nodenames import anon_nodename

__all__ = ["TaskMessages"]

_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


class TaskMessages:
    """Builds task messages for one producer process (its ``origin`` and reply-to id)."""

    def __init__(self, reply_to: str, origin: str | None = None):
        self.reply_to = reply_to  # the app's thread oid, as send_task sets it
        self.origin = origin or anon_nodename()

    def build(self, task: str, args: Sequence[object] = (), kwargs: Mapping[str, object] | None = None, *,
              queue: str, argsrepr: str | None = None, kwargsrepr: str | None = None) -> str:
        """The JSON text kombu's Redis transport would ``LPUSH`` for ``send_task(task, args,
        kwargs, ignore_result=True)`` routed to ``queue``. ``argsrepr``/``kwargsrepr`` replace
        the reprs shown by Flower and the logs (default: ``repr`` of the arguments, as Celery)."""
        task_id = str(uuid.uuid4())
        args, kwargs = list(args), dict(kwargs or {})
        body = json.dumps([args, kwargs, _EMBED]).encode()
        return json.dumps({
            "body": base64.b64encode(body).decode("ascii"),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                "lang": "py", "task": task, "id": task_id, "shadow": None, "eta": None, "expires": None,
                "group": None, "group_index": None, "retries": 0, "timelimit": [None, None],
                "root_id": task_id, "parent_id": None,
                "argsrepr": repr(args) if argsrepr is None else argsrepr,
                "kwargsrepr": repr(kwargs) if kwargsrepr is None else kwargsrepr,
                "origin": self.origin, "ignore_result": True, "replaced_task_nesting": 0,
                "stamped_headers": None, "stamps": {},
            },
            "properties": {
                "correlation_id": task_id, "reply_to": self.reply_to, "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue}, "priority": 0,
                "body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
            },
        })

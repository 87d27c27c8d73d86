"""``TaskMessages.build`` writes its envelope from a template: the text must be, once parsed,
exactly the dict tree Celery's message is (the integration test compares that tree with a real
``send_task``'s), for any arguments and names."""

import base64
import json
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.runtime.messages import TaskMessages

_text = st.text(max_size=20)
_values = st.recursive(st.none() | st.booleans() | st.integers() | _text,
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
                       max_leaves=8)


def _tree(task, args, kwargs, queue, argsrepr, kwargsrepr, origin, reply_to, task_id, tag) -> dict:
    """The message as a dict tree, built the plain way (what the template replaced)."""
    body = json.dumps([list(args), dict(kwargs),
                       {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]).encode()
    return {
        "body": base64.b64encode(body).decode("ascii"), "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"lang": "py", "task": task, "id": task_id, "shadow": None, "eta": None, "expires": None,
                    "group": None, "group_index": None, "retries": 0, "timelimit": [None, None],
                    "root_id": task_id, "parent_id": None,
                    "argsrepr": repr(list(args)) if argsrepr is None else argsrepr,
                    "kwargsrepr": repr(dict(kwargs)) if kwargsrepr is None else kwargsrepr,
                    "origin": origin, "ignore_result": True, "replaced_task_nesting": 0,
                    "stamped_headers": None, "stamps": {}},
        "properties": {"correlation_id": task_id, "reply_to": reply_to, "delivery_mode": 2,
                       "delivery_info": {"exchange": "", "routing_key": queue}, "priority": 0,
                       "body_encoding": "base64", "delivery_tag": tag},
    }


@settings(max_examples=300, deadline=None)
@given(_text, st.lists(_values, max_size=3), st.dictionaries(_text, _values, max_size=3), _text,
       st.none() | _text, st.none() | _text, st.text(min_size=1, max_size=20), _text)
def test_the_template_writes_the_message_tree(task, args, kwargs, queue, argsrepr, kwargsrepr, origin, reply_to):
    built = json.loads(TaskMessages(reply_to, origin).build(task, args, kwargs, queue=queue, argsrepr=argsrepr,
                                                             kwargsrepr=kwargsrepr))
    task_id, tag = built["headers"]["id"], built["properties"]["delivery_tag"]
    assert uuid.UUID(task_id).version == 4 and uuid.UUID(tag).version == 4 and task_id != tag
    assert built == _tree(task, args, kwargs, queue, argsrepr, kwargsrepr, origin, reply_to, task_id, tag)

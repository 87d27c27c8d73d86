"""The private parts of kombu and Celery that worker/runtime/broker.py and worker/runtime/consumer.py build on.

Both modules override or call methods that are no public interface: kombu's Redis channel (how it
builds its connection parameters and clients) and Celery's consumer (how buffered task events are
flushed, and the log templates of rejected messages, whose argument positions decide what is
hidden). pyproject.toml pins kombu and Celery to the minor version they were written against; a
new patch release, or a raised pin, lands here first. Each part must still exist, take the same
parameters and read exactly as it did when the overrides were written (a hash of its source,
recorded with that version), so that any change fails here by name, not later in production.

When one fails: read the new source against the module named in the message, adapt the module if
needed, then record the new hash and version below (and raise the pin in pyproject.toml).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import inspect
import re
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# the versions the hashes below were recorded with
RECORDED = {"kombu": "5.7.0", "celery": "5.7.0"}

# (distribution, module, attribute path, our module that depends on it, parameters or None for
#  a string constant, sha256 of its dedented source (or of the string) — first 16 hex digits)
PARTS = [
    # overridden: raises a connection error once the channel has lost its connection
    ("kombu", "kombu.transport.redis", "Channel._connparams", "worker/runtime/broker.py",
     "(self, asynchronous=False)", "7cda548c60354a60"),
    # overridden: one client per pool; relies on it building Client(connection_pool=self.pool)
    ("kombu", "kombu.transport.redis", "Channel._create_client", "worker/runtime/broker.py",
     "(self, asynchronous=False)", "376ef74d24a41659"),
    # read by that override: the pool must stay one cached object until it is replaced
    ("kombu", "kombu.transport.redis", "Channel.pool", "worker/runtime/broker.py",
     "(self)", "21755a780d16f22f"),
    # the caller that builds a client per operation: the reason for the override
    ("kombu", "kombu.transport.redis", "Channel.conn_or_acquire", "worker/runtime/broker.py",
     "(self, client=None)", "01ab44dd770603a6"),
    # overridden: wakes the event loop once per interval instead of once per event
    ("celery", "celery.worker.consumer.consumer", "Consumer.on_send_event_buffered",
     "worker/runtime/consumer.py", "(self)", "938167707b72e659"),
    # called by our flush
    ("celery", "celery.worker.consumer.consumer", "Consumer._flush_events", "worker/runtime/consumer.py",
     "(self)", "4211249046784d0c"),
    # wires on_send_event_buffered into the dispatcher (only with an event loop)
    ("celery", "celery.worker.consumer.events", "Events.start", "worker/runtime/consumer.py",
     "(self, c)", "a3ecc36528ef6d11"),
    # calls it per buffered event, and flushes by itself at its buffer limit
    ("celery", "celery.events.dispatcher", "EventDispatcher.send", "worker/runtime/consumer.py",
     "(self, type, blind=False, utcoffset=<>, retry=False, retry_policy=None, Event=<>, **fields)",
     "6390e79ad197479a"),
    # overridden (RabbitMQ: events without publisher confirms); Events.start above is its one caller
    ("celery", "celery.worker.consumer.consumer", "Consumer.connection_for_write", "worker/runtime/consumer.py",
     "(self, url=None, heartbeat=None)", "fd75e73aafacac47"),
    # the rejected-message log lines: which argument carries the body or the headers
    ("celery", "celery.worker.consumer.consumer", "Consumer.on_unknown_message", "worker/runtime/consumer.py",
     "(self, body, message)", "f49ac6b187e62d7d"),
    ("celery", "celery.worker.consumer.consumer", "Consumer.on_unknown_task", "worker/runtime/consumer.py",
     "(self, body, message, exc)", "a56f85545d1a961b"),
    ("celery", "celery.worker.consumer.consumer", "Consumer.on_invalid_task", "worker/runtime/consumer.py",
     "(self, body, message, exc)", "890511ee0a773b9b"),
    ("celery", "celery.worker.consumer.consumer", "Consumer.on_decode_error", "worker/runtime/consumer.py",
     "(self, message, exc)", "19f6cb0c22df7455"),
    ("celery", "celery.worker.consumer.consumer", "UNKNOWN_FORMAT", "worker/runtime/consumer.py",
     None, "d6572b89404b0334"),
    ("celery", "celery.worker.consumer.consumer", "UNKNOWN_TASK_ERROR", "worker/runtime/consumer.py",
     None, "4ff8677dee5943fd"),
    ("celery", "celery.worker.consumer.consumer", "INVALID_TASK_ERROR", "worker/runtime/consumer.py",
     None, "1baf7174c9d8fe39"),
    ("celery", "celery.worker.consumer.consumer", "MESSAGE_DECODE_ERROR", "worker/runtime/consumer.py",
     None, "ca9145a081f6a04a"),
]


def _lookup(module_name: str, path: str):
    """The attribute as defined (a property stays a property), or None when it is gone."""
    obj = importlib.import_module(module_name)
    for name in path.split("."):
        obj = vars(obj).get(name) if isinstance(obj, type) else getattr(obj, name, None)
        if obj is None:
            return None
    return obj


def _parameters(obj) -> str:
    # defaults that are objects print with an address: only their presence is compared
    return re.sub(r"=<[^>]*>", "=<>", str(inspect.signature(obj)))


def _digest(obj) -> str:
    text = obj if isinstance(obj, str) else textwrap.dedent(inspect.getsource(obj))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _unwrap(obj):
    if isinstance(obj, property):
        return obj.fget
    return getattr(obj, "__wrapped__", obj)  # @contextmanager keeps the function here


@pytest.mark.parametrize("dist, module, path, ours, parameters, digest", PARTS,
                         ids=[f"{p[0]}:{p[2]}" for p in PARTS])
def test_private_part_is_as_written_against(dist, module, path, ours, parameters, digest):
    installed = importlib.metadata.version(dist)
    where = (f"{module}.{path} in {dist} {installed} (which {ours} relies on; recorded with "
             f"{dist} {RECORDED[dist]})")
    obj = _lookup(module, path)
    assert obj is not None, f"{where} is GONE: {ours} must be rewritten before this {dist} is used"
    obj = _unwrap(obj)
    if parameters is None:
        assert isinstance(obj, str), f"{where} is no longer a string template"
    else:
        assert _parameters(obj) == parameters, (
            f"{where} now takes {_parameters(obj)}, not {parameters}: {ours} overrides or calls it "
            f"with the old parameters")
    assert _digest(obj) == digest, (
        f"{where} CHANGED (source hash {_digest(obj)}, recorded {digest}): read the new source "
        f"against {ours}, adapt it if needed, then record the new hash and version in {__name__}")


@pytest.mark.parametrize("dist", sorted(RECORDED))
def test_pin_is_the_minor_version_recorded_here(dist):
    """pyproject.toml allows exactly the minor version the hashes were recorded with."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [r for r in project["dependencies"] if re.match(rf"{dist}(\[[^]]*\])?[<>=]", r)]
    assert len(pins) == 1, f"{dist}: one requirement expected in pyproject.toml, found {pins}"
    major, minor, *_ = RECORDED[dist].split(".")
    wanted = f">={major}.{minor},<{major}.{int(minor) + 1}"
    assert pins[0].endswith(wanted), (
        f"pyproject.toml has {pins[0]!r}: this guard's hashes were recorded with {dist} "
        f"{RECORDED[dist]}, so the pin must be {wanted!r}")
    installed = importlib.metadata.version(dist)
    assert installed.split(".")[:2] == [major, minor], (
        f"{dist} {installed} is installed, outside the pin {wanted}: reinstall (scripts/setup.sh)")

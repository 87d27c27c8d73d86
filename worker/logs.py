"""One event per line, for every process: logfmt by default, JSON with ``VEXORA_LOG_FORMAT=json``.

Every line has ``timestamp`` (ISO 8601, UTC), ``level``, ``logger`` and ``event`` first, then the
event's own fields. Everything goes through the standard library's ``logging`` — our modules,
Celery, kombu, gunicorn, Flask — and structlog's ``ProcessorFormatter`` turns each record into
its line, so a library's plain ``log.info("... %s", x)`` becomes ``event="... x"`` and nothing
writes a line of another shape. Configured once per process, from here:

- Celery worker and beat: ``configure`` from Celery's ``setup_logging`` signal (worker/celery.py);
  a receiver on that signal is what stops Celery installing its own ``[ts: INFO/MainProcess]``
  format, on the root logger and on its task loggers alike;
- gunicorn: ``gunicorn_logconfig`` as ``logconfig_dict`` in gunicorn.conf.py (its error log, its
  access log — as fields, never the query string or headers — and the app's own lines, at INFO);
- the CLI: ``configure`` in its group callback (worker/cli/main.py).

Our own events carry key-value fields: ``event(log, logging.INFO, "state_change", tradeNo=t,
to="paying")``. Under a formatter that is not ours (an application that calls ``enqueue_checkout``
with its own logging, pytest's caplog) the message still reads ``state_change tradeNo=... to=paying``.

Escaping. A logfmt value is written bare only when it is printable and has no space, ``=``, ``"``
or ``\\``; otherwise it is quoted, and the quoted text is a JSON string literal (``\\"``, ``\\\\``,
``\\n``, ``\\uXXXX``), so any value — quotes, ``=``, newlines, unicode — reads back exactly and a
line is never split. In both formats the characters that some readers take for a line break or a
terminal control (C1 controls, U+2028/U+2029) and lone surrogates (undecodable input, which the
stream could not encode) are written as ``\\uXXXX`` escapes.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
from collections.abc import Mapping
from datetime import datetime, timezone

import structlog

__all__ = ["FORMATS", "configure", "event", "gunicorn_logconfig", "dict_config", "formatter"]

FORMATS = ("logfmt", "json")
_FIRST = ("timestamp", "level", "logger", "event")
# the LogRecord attribute that carries one of our events' name and fields (see ``event``)
_EVENT_ATTR = "vexora_event"
# a reader's line breaks besides \n and \r (JSON escapes every character below U+0020 itself),
# C1 controls and lone surrogates: written as \\uXXXX
_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_BARE_EXCLUDED = re.compile(r'[\s="\\]')


def event(logger: logging.Logger, level: int, name: str, fields: Mapping[str, object] | None = None,
          /, **more: object) -> None:
    """Log the event ``name`` with key-value ``fields`` (a mapping for keys such as ``from``)."""
    if logger.isEnabledFor(level):
        pairs = {**(fields or {}), **more}
        logger.log(level, "%s", _Event(name, pairs), extra={_EVENT_ATTR: (name, pairs)}, stacklevel=2)


class _Event:
    """The message of an ``event`` record for formatters that are not ours: name and logfmt pairs."""

    __slots__ = ("name", "fields")

    def __init__(self, name: str, fields: dict[str, object]):
        self.name, self.fields = name, fields

    def __str__(self) -> str:
        return " ".join([logfmt_value(self.name), *(f"{logfmt_key(k)}={logfmt_value(v)}"
                                                     for k, v in self.fields.items())])


# -- rendering ------------------------------------------------------------------------------------
def _escape_unsafe(text: str) -> str:
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def logfmt_key(key: object) -> str:
    """A key as logfmt allows it: no space, ``=``, ``"`` or control character (each becomes ``_``)."""
    text = str(key)
    if text and text.isprintable() and not _BARE_EXCLUDED.search(text):
        return text
    return "".join(c if c.isprintable() and not _BARE_EXCLUDED.match(c) else "_" for c in text) or "_"


def logfmt_value(value: object) -> str:
    """One value: bare when that is unambiguous, else a quoted JSON string (see the module text)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    else:
        text = str(value)
    if text and text.isprintable() and not _BARE_EXCLUDED.search(text):
        return text
    return _escape_unsafe(json.dumps(text, ensure_ascii=False))


def render_logfmt(_logger, _method: str, event_dict: dict) -> str:
    pairs, used = [], set()
    for key, value in event_dict.items():
        key = logfmt_key(key)
        while key in used:  # two keys made alike by logfmt_key: both kept, as a reader needs
            key = f"{key}_"
        used.add(key)
        pairs.append(f"{key}={logfmt_value(value)}")
    return " ".join(pairs)


def render_json(_logger, _method: str, event_dict: dict) -> str:
    # structure is ASCII, so the unsafe characters can only be inside strings: escaping them
    # there keeps the JSON valid and its values exact
    return _escape_unsafe(json.dumps(event_dict, ensure_ascii=False, default=str))


_RENDERERS = {"logfmt": render_logfmt, "json": render_json}


# -- the event dict -------------------------------------------------------------------------------
def _record_fields(_logger, _method: str, event_dict: dict) -> dict:
    """A stdlib record's fields: ours from ``event``, gunicorn's access atoms (a chosen few)."""
    atoms = event_dict.pop("positional_args", None)
    record = event_dict.get("_record")
    ours = getattr(record, _EVENT_ATTR, None)
    if ours is not None:
        name, fields = ours
        event_dict["event"] = name
        for key, value in fields.items():
            # a field never replaces the line's own timestamp, level, logger or event, nor
            # structlog's own keys (``_record``): it gets a ``_`` more
            while key in _FIRST or key in event_dict:
                key = f"{key}_"
            event_dict[key] = value
    elif record is not None and record.name == "gunicorn.access" and isinstance(atoms, Mapping):
        # Not the combined log line: it has the query string, and the atoms hold every header
        # (Authorization included). The path (no query), status, size, time, peer only.
        event_dict["event"] = "request"
        event_dict.update(method=atoms.get("m"), path=_unquote_atom(atoms.get("U")),
                          status=_int(atoms.get("s")), bytes=_int(atoms.get("B")),
                          duration_ms=round(atoms.get("D", 0) / 1000, 3) if isinstance(atoms.get("D"), int) else None,
                          remote=atoms.get("h"))
    return event_dict


def _unquote_atom(text: object) -> object:
    # gunicorn's SafeAtoms escapes '"' for its quoted line format
    return text.replace('\\"', '"') if isinstance(text, str) else text


def _int(value: object) -> object:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def _first_keys(_logger, _method: str, event_dict: dict) -> dict:
    ordered = {key: event_dict.pop(key) for key in _FIRST if key in event_dict}
    ordered.update(event_dict)
    return ordered


_SHARED = [
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
    structlog.processors.format_exc_info,  # the traceback as one escaped value, not extra lines
]


# the keys an event's field never takes as they are: the line's first four, and structlog's own
_RESERVED = frozenset(_FIRST) | {"_record", "_from_structlog"}


class _LineFormatter(structlog.stdlib.ProcessorFormatter):
    """structlog's formatter, with a direct path for our own events (``event``): the same line,
    built without the processor chain, a copy of the record and the message text nobody reads
    (a third of the cost; a worker writes one such line per state change)."""

    def __init__(self, fmt: str):
        super().__init__(
            foreign_pre_chain=[_record_fields, *_SHARED],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _first_keys,
                        _RENDERERS[fmt]],
            pass_foreign_args=True,  # gunicorn's access atoms; dropped from every line by _record_fields
        )
        self._render = _RENDERERS[fmt]

    def format(self, record: logging.LogRecord) -> str:
        ours = getattr(record, _EVENT_ATTR, None)
        if ours is None or record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)
        name, fields = ours
        line = {"timestamp": datetime.now(tz=timezone.utc).isoformat().replace("+00:00", "Z"),
                "level": record.levelname.lower(), "logger": record.name, "event": name}
        for key, value in fields.items():
            # _record_fields' rule: a field never replaces the line's own keys, it gets a ``_`` more
            while key in _RESERVED or key in line:
                key = f"{key}_"
            line[key] = value
        return self._render(None, "", line)


def formatter(fmt: str = "logfmt") -> logging.Formatter:
    """The ``logging`` formatter that writes one line per record in ``fmt`` (logfmt or json)."""
    if fmt not in _RENDERERS:
        raise ValueError(f"log format {fmt!r}: not one of {', '.join(FORMATS)}")
    return _LineFormatter(fmt)


# -- configuration --------------------------------------------------------------------------------
def dict_config(fmt: str = "logfmt", level: int | str = logging.INFO) -> dict:
    """The ``logging.config.dictConfig`` of a process: one handler, on stderr, on the root logger."""
    formatter(fmt)  # an unknown format fails here, not at the first line
    return {
        "version": 1,
        # loggers made at import time (vexora.*, celery.*) must keep working
        "disable_existing_loggers": False,
        "formatters": {"lines": {"()": formatter, "fmt": fmt}},
        # stderr: a CLI's stdout stays its answer (tradeNos, JSON); one handler, so one lock and
        # whole lines even when threads log at once
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                "formatter": "lines"}},
        "root": {"level": level, "handlers": ["stderr"]},
    }


def configure(fmt: str = "logfmt", level: int | str = logging.INFO) -> None:
    """Every record of this process, ``level`` and above, one line each in ``fmt`` on stderr."""
    logging.config.dictConfig(dict_config(fmt, level))
    _route_structlog()


def gunicorn_logconfig(fmt: str = "logfmt") -> dict:
    """gunicorn's ``logconfig_dict``: its error and access logs and the app's own lines (INFO)
    through the one handler. Also routes structlog's loggers there (gunicorn.conf.py calls this
    once, in the master, before the workers fork)."""
    config = dict_config(fmt, logging.INFO)
    config["loggers"] = {
        # gunicorn gives both loggers handlers of their own and stops their propagation; this
        # replaces those handlers with none and lets the records reach the root's. No level for
        # gunicorn.error: --log-level still decides it.
        "gunicorn.error": {"handlers": [], "propagate": True},
        "gunicorn.access": {"handlers": [], "propagate": True, "level": "INFO"},
    }
    _route_structlog()
    return config


def _route_structlog() -> None:
    """structlog's own loggers, should a module use one, go to the same handler and format
    (unconfigured, structlog would print to stdout in its console format)."""
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.stdlib.filter_by_level, *_SHARED,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )

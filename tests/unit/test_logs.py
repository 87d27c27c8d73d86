"""worker.logs: every record one line, in logfmt or JSON, read back exactly by an independent parser
(tests/support/loglines.py) — whatever the values hold: quotes, '=', spaces, newlines, unicode."""

from __future__ import annotations

import datetime as dt
import io
import logging
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker import logs
from worker.config.settings import Settings
from worker.domain.errors import ConfigurationError
from tests.support.loglines import FIRST_KEYS, Unparsable, parse_line, parse_logfmt
from tests.support.processes import ROOT

FORMATS = ["logfmt", "json"]

AWKWARD = {
    "quote": 'say "hi"',
    "equals": "a=b",
    "spaces": "two  spaces ",
    "newline": "line one\nline two",
    "crlf": "a\r\nb",
    "tab": "a\tb",
    "backslash": "C:\\path\\n",  # a backslash then n: not a newline
    "backslash_quote": '\\"',
    "only_quote": '"',
    "empty": "",
    "japanese": "マーカー ヤマダ",
    "japanese_bare": "タロウ",
    "emoji": "🎌",
    "line_separators": "a\u2028b\u2029c\x85d\x0be\x0cf\x1cg",
    "controls": "\x00\x1b[31mred\x7f\x9b",
    "lone_surrogate": "bad \ud800 input",
    "rtl_and_zero_width": "\u202eabc\u200b",
    "ideographic_space": "a\u3000b",
    "looks_like_pair": 'x=1 y="2"',
    "trailing_backslash": "end\\",
}


def render(fmt: str, emit) -> list[str]:
    """What ``emit(logger)`` writes through the formatter of ``fmt``: its lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter(fmt))
    logger = logging.getLogger(f"vexora.test.{fmt}")
    logger.handlers[:] = [handler]
    logger.propagate, logger.level = False, logging.DEBUG
    try:
        emit(logger)
    finally:
        logger.handlers[:] = []
    text = stream.getvalue()
    assert text.endswith("\n"), text
    return text[:-1].split("\n")


def one_line(fmt: str, emit) -> dict:
    lines = render(fmt, emit)
    assert len(lines) == 1, lines
    line = lines[0]
    assert len(line.splitlines()) == 1, f"a reader would split this line: {line!r}"
    assert line.encode("utf-8")  # writable to a UTF-8 stream (no lone surrogate left raw)
    return parse_line(line, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_awkward_values_read_back_exactly(fmt):
    fields = one_line(fmt, lambda log: logs.event(log, logging.INFO, "state_change", AWKWARD))
    assert fields["event"] == "state_change"
    assert {k: fields[k] for k in AWKWARD} == AWKWARD


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_line_begins_with_timestamp_level_logger_event(fmt):
    before = dt.datetime.now(dt.timezone.utc)
    fields = one_line(fmt, lambda log: logs.event(log, logging.WARNING, "lease_lost", tradeNo="T1",
                                                  when="before sending"))
    after = dt.datetime.now(dt.timezone.utc)
    assert list(fields)[:6] == [*FIRST_KEYS, "tradeNo", "when"]
    assert fields["level"] == "warning" and fields["logger"] == f"vexora.test.{fmt}"
    assert fields["timestamp"].endswith("Z")  # ISO 8601, UTC
    at = dt.datetime.fromisoformat(fields["timestamp"].replace("Z", "+00:00"))
    assert at.utcoffset() == dt.timedelta(0) and before <= at <= after


def test_types_survive_in_json_and_become_text_in_logfmt():
    typed = {"attempt": 1, "latencyMs": 212.5, "ok": True, "no": False, "none": None,
             "counts": {"paying": 2, "deferred": 1}, "codes": ["0000", "0015"], "from": "queued"}
    as_json = one_line("json", lambda log: logs.event(log, logging.INFO, "e", typed))
    assert {k: as_json[k] for k in typed} == typed
    as_logfmt = one_line("logfmt", lambda log: logs.event(log, logging.INFO, "e", typed))
    assert {k: as_logfmt[k] for k in typed} == {
        "attempt": "1", "latencyMs": "212.5", "ok": "true", "no": "false", "none": "",
        "counts": '{"paying":2,"deferred":1}', "codes": '["0000","0015"]', "from": "queued"}


def test_logfmt_writes_bare_only_what_cannot_be_misread():
    line = render("logfmt", lambda log: logs.event(log, logging.INFO, "state_change", {
        "tradeNo": "T-1_a", "to": "paying", "attempt": 1, "name": "タロウ", "reason": "gateway answered",
        "empty": "", "none": None}))[0]
    assert line.split(" ", 3)[3] == ('event=state_change tradeNo=T-1_a to=paying attempt=1 name=タロウ '
                                     'reason="gateway answered" empty="" none=')


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_plain_logging_call_is_one_event(fmt):
    fields = one_line(fmt, lambda log: log.error("callback for %s not queued: %s", 'T"1', "a=b\nc"))
    assert fields["event"] == 'callback for T"1 not queued: a=b\nc' and fields["level"] == "error"
    assert list(fields) == FIRST_KEYS  # positional arguments are in the event, not extra keys


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_exception_is_one_line_with_its_traceback_as_a_value(fmt):
    def emit(log):
        try:
            raise ValueError('bad "value"\nsecond line')
        except ValueError:
            log.exception("submit failed")
    fields = one_line(fmt, emit)
    assert fields["event"] == "submit failed"
    assert fields["exception"].startswith("Traceback (most recent call last):\n")
    assert fields["exception"].endswith('ValueError: bad "value"\nsecond line')


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_field_never_replaces_the_lines_own_keys(fmt):
    fields = one_line(fmt, lambda log: logs.event(log, logging.INFO, "x", event="other", level="y", logger="z",
                                                  timestamp="t"))
    assert fields["event"] == "x" and fields["level"] == "info" and fields["logger"] == f"vexora.test.{fmt}"
    assert (fields["event_"], fields["level_"], fields["logger_"], fields["timestamp_"]) == ("other", "y", "z", "t")


@pytest.mark.parametrize("fmt", FORMATS)
def test_keys_logfmt_cannot_hold_are_made_safe_and_unique(fmt):
    fields = one_line(fmt, lambda log: logs.event(log, logging.INFO, "x", {"a b": 1, 'q"=': 2, "": 3, "é": 4,
                                                                          "a\nb": 5, "_record": 6}))
    if fmt == "json":
        assert {k: fields[k] for k in ("a b", 'q"=', "", "é", "a\nb", "_record_")} == {
            "a b": 1, 'q"=': 2, "": 3, "é": 4, "a\nb": 5, "_record_": 6}
    else:
        assert {k: fields[k] for k in ("a_b", "q__", "_", "é", "a_b_", "_record_")} == {
            "a_b": "1", "q__": "2", "_": "3", "é": "4", "a_b_": "5", "_record_": "6"}


def test_an_event_under_a_formatter_that_is_not_ours_still_shows_its_fields():
    """An application calling enqueue_checkout with its own logging (or pytest's caplog)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("vexora.test.foreign")
    logger.handlers[:], logger.propagate = [handler], False
    logger.setLevel(logging.INFO)
    logs.event(logger, logging.INFO, "state_change", {"tradeNo": "T1", "from": "new", "to": "queued",
                                                      "reason": 'a "b"'})
    logs.event(logger, logging.DEBUG, "not_shown", x=1)
    assert stream.getvalue() == 'INFO state_change tradeNo=T1 from=new to=queued reason="a \\"b\\""\n'


# the line's own keys and structlog's are renamed when a field uses them (test above)
_TAKEN = {*FIRST_KEYS, "_record", "_from_structlog"}


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=150, deadline=None)
@given(values=st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k not in _TAKEN),
                              st.text(max_size=40), max_size=5),
       name=st.text(min_size=1, max_size=20))
def test_any_text_reads_back_exactly(fmt, values, name):
    fields = one_line(fmt, lambda log: logs.event(log, logging.INFO, name, values))
    assert fields["event"] == name
    if fmt == "json":
        assert {k: fields[k] for k in values} == values
    else:
        # keys logfmt cannot hold are rewritten (and made unique): every value is still there,
        # exactly, in order; and a key logfmt can hold is itself unless a rewritten one took it
        assert list(fields.values())[4:] == list(values.values())
        safe = [k for k in values if logs.logfmt_key(k) == k]
        if all(logs.logfmt_key(k) not in safe for k in values if k not in safe):
            assert {k: fields[k] for k in safe} == {k: values[k] for k in safe}


@pytest.mark.parametrize("line", [
    'a=1 b="unterminated', 'a=1  b=2', "a=x=y", 'a="x"y', "=1", "a=1 a=2", 'a="\\q"', "a", "a=1 ",
    'a=b"c', "a=\\n",
])
def test_the_parser_refuses_what_is_not_logfmt(line):
    with pytest.raises(Unparsable):
        parse_logfmt(line)


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError):
        logs.formatter("xml")
    assert Settings.from_env({"VEXORA_LOG_FORMAT": "JSON"}).log_format == "json"
    assert Settings.from_env({}).log_format == "logfmt"
    with pytest.raises(ConfigurationError, match="VEXORA_LOG_FORMAT"):
        Settings.from_env({"VEXORA_LOG_FORMAT": "xml"})


# -- configure(), in a process of its own (it configures the process's logging) ----------------------
PROBE = textwrap.dedent("""
    import logging, sys, warnings
    import click, structlog
    from worker.cli import main

    @main.command("probe")
    def probe():
        logging.getLogger("vexora.probe").info("info is below a command's level")
        logging.getLogger("vexora.probe").warning("plain %s", "a=b c")
        structlog.get_logger("vexora.structlog").warning("native", key='v "w"')
        click.echo("the answer")  # stdout stays the command's own

    main()
""")


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_cli_logs_warnings_as_lines_on_stderr_and_keeps_stdout(fmt):
    env = {"PATH": "/usr/bin:/bin", "VEXORA_LOG_FORMAT": fmt if fmt == "json" else ""}
    done = subprocess.run([sys.executable, "-c", PROBE, "probe"], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "the answer\n"
    lines = [parse_line(line, fmt) for line in done.stderr.splitlines()]
    assert [(f["logger"], f["level"], f["event"]) for f in lines] == [
        ("vexora.probe", "warning", "plain a=b c"), ("vexora.structlog", "warning", "native")]
    assert lines[1]["key"] == 'v "w"'


def test_gunicorn_logconfig_routes_its_loggers_to_the_one_handler():
    config = logs.gunicorn_logconfig("json")
    assert config["disable_existing_loggers"] is False
    assert config["root"] == {"level": logging.INFO, "handlers": ["stderr"]}
    for name in ("gunicorn.error", "gunicorn.access"):
        assert config["loggers"][name]["handlers"] == [] and config["loggers"][name]["propagate"] is True
    assert "level" not in config["loggers"]["gunicorn.error"]  # --log-level still decides it
    with pytest.raises(ValueError):
        logs.gunicorn_logconfig("xml")


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_raw_line_break_control_or_surrogate_is_written(fmt):
    raw = render(fmt, lambda log: logs.event(log, logging.INFO, "e", AWKWARD))[0]
    assert not [c for c in raw if c < " " or "\x7f" <= c <= "\x9f" or c in "\u2028\u2029"
                or "\ud800" <= c <= "\udfff"], raw
    assert {k: parse_line(raw, fmt)[k] for k in AWKWARD} == AWKWARD


def test_our_events_direct_path_writes_the_very_line_of_the_processor_chain():
    """``_LineFormatter`` builds our own events' lines without structlog's chain: the same keys,
    order, renaming and escaping (the timestamps aside, taken a moment apart)."""
    import re

    import structlog

    from worker import logs

    cases = [("state_change", {"tradeNo": "T1", "from": "a", "to": "b", "attempt": 1}),
             ("x", {"level": "z", "event": "e", "event_": 3, "_record": 1, "timestamp": "t", "logger": None,
                    "v": 'a "b" = c\n\u2028\x85', "d": {"k": [1, None]}, "b": True, "n": 1.5}),
             ("naïve événement", {})]
    for fmt in logs.FORMATS:
        fast = logs.formatter(fmt)
        chain = structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[logs._record_fields, *logs._SHARED],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, logs._first_keys,
                        logs._RENDERERS[fmt]], pass_foreign_args=True)
        for name, fields in cases:
            for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
                record = logging.LogRecord("vexora.t", level, __file__, 1, "%s", (logs._Event(name, fields),), None)
                setattr(record, logs._EVENT_ATTR, (name, fields))
                stamp = re.compile(r'"?timestamp"?[=:] ?"?[0-9T:.\-]+Z"?')
                assert stamp.sub("", fast.format(record)) == stamp.sub("", chain.format(record))

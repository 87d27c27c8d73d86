"""Issue 22: the README lists every variable in one table with its default, and the table is true.

The settings' rows are exactly ``Settings.ENV``'s variables, each with the default the dataclass
has (an empty one, or the "derived" -1, shows as —); the other rows are the variables read by a
process, compose or the test command, each default checked against the file that applies it.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, fields
from pathlib import Path

from worker.config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
HEADER = "| variable | default | what |"

DISPLAY_TZ = "VEXORA_DISPLAY_TZ"  # the console's time zone (issue 22, C): a setting once merged
# not settings: variable -> (its default as the table shows it, the file that applies it, the text there)
OTHERS = {
    "VEXORA_APP_SECRET_FILE": ("—", "worker/config/settings.py", 'environ.get("VEXORA_APP_SECRET_FILE")'),
    "PORT": ("— (`127.0.0.1:8000`)", "gunicorn.conf.py", '["127.0.0.1:8000"]'),
    "WEB_CONCURRENCY": ("`2`", "gunicorn.conf.py", 'os.environ.get("WEB_CONCURRENCY") or 2'),
    "GUNICORN_THREADS": ("`8`", "gunicorn.conf.py", 'os.environ.get("GUNICORN_THREADS") or 8'),
    "WORKER_CONCURRENCY": ("`16`", "Procfile", "${WORKER_CONCURRENCY:-16}"),
    "WEBHOOK_CONCURRENCY": ("`8`", "Procfile", "${WEBHOOK_CONCURRENCY:-8}"),
    "FLOWER_PORT": ("`5555`", "Procfile", "${FLOWER_PORT:-5555}"),
    "SANDBOX_PORT": ("`8900`", "Procfile", "${SANDBOX_PORT:-8900}"),
    "BEAT_SCHEDULE_FILE": ("`vexora-celerybeat-schedule` in the temp folder", "Procfile",
                           "${BEAT_SCHEDULE_FILE:-/tmp/vexora-celerybeat-schedule}"),
    "COMPOSE_REDIS_URL": ("`redis://redis:6379/0`", "docker-compose.yml", "${COMPOSE_REDIS_URL:-redis://redis:6379/0}"),
    "COMPOSE_SENTINEL_MASTER": ("—", "docker-compose.yml", "${COMPOSE_SENTINEL_MASTER:-}"),
    "COMPOSE_REDIS_MIN_REPLICAS_TO_WRITE": ("`0`", "docker-compose.yml", "${COMPOSE_REDIS_MIN_REPLICAS_TO_WRITE:-0}"),
    "RABBITMQ_PASSWORD": ("—", "docker-compose.yml", "${RABBITMQ_PASSWORD:-}"),
    "VEXORA_TEST_WORKERS": ("`3`", "scripts/test", '"${VEXORA_TEST_WORKERS:-3}"'),
    "VEXORA_TEST_PORT_SLOT": ("`0`", "tests/conftest.py", 'os.environ.get("VEXORA_TEST_PORT_SLOT", "0")'),
    "VEXORA_RELIABILITY_FULL": ("—", "tests/reliability/conftest.py", "VEXORA_RELIABILITY_FULL"),
}


def render(value) -> str:
    """A default as the table shows it."""
    if value in ("", (), None, -1):
        return "—"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, tuple):
        return "`" + ",".join(str(int(v) if isinstance(v, float) and v.is_integer() else v) for v in value) + "`"
    return f"`{value}`"


def table() -> dict[str, str]:
    """The README's variables table: variable -> its default cell (each variable once)."""
    assert README.count(HEADER) == 1, "one table of variables"
    lines = README.split(HEADER, 1)[1].splitlines()[2:]
    rows: dict[str, str] = {}
    for line in lines:
        if not line.startswith("|"):
            break
        match = re.match(r"\| `([A-Z0-9_]+)` \| (.*?) \| .+ \|$", line)
        assert match, f"not a row of variable | default | what: {line!r}"
        assert match.group(1) not in rows, f"{match.group(1)} listed twice"
        rows[match.group(1)] = match.group(2)
    return rows


def settings_defaults() -> dict[str, str]:
    defaults = {f.name: (f.default if f.default is not MISSING else f.default_factory()) for f in fields(Settings)}
    return {var: render(defaults[name]) for name, (var, _) in Settings.ENV.items()}


def test_the_table_lists_every_setting_with_its_default():
    rows, wanted = table(), settings_defaults()
    assert {var: rows.get(var) for var in wanted} == wanted


def test_the_table_lists_nothing_else_but_the_other_variables_it_names():
    rows, settings = table(), settings_defaults()
    others = set(OTHERS) | ({DISPLAY_TZ} if DISPLAY_TZ not in settings else set())
    assert set(rows) == set(settings) | others, sorted(set(rows) ^ (set(settings) | others))
    if DISPLAY_TZ not in settings:  # before the console's setting is merged: the row it will have
        assert rows[DISPLAY_TZ] == "`Asia/Tokyo`"


def test_the_other_variables_defaults_are_what_their_files_apply():
    rows = table()
    for var, (shown, path, text) in OTHERS.items():
        assert rows[var] == shown, var
        assert text in (ROOT / path).read_text(encoding="utf-8"), f"{var}: {text!r} not in {path}"


def test_the_table_is_under_configuration():
    section = README.split("\n### Configuration\n", 1)[1].split("\n### ", 1)[0]
    assert HEADER in section

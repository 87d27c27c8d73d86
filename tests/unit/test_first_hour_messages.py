"""Issue 22, broken or stale: a typo'd VEXORA_* variable is warned about with the closest known
name; a command that needs the gateway settings names the missing ones before doing anything; CLI
errors are plain lines, never a dict's repr."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from worker.cli.main import problem_lines
from worker.config.settings import known_variables, unknown_variables
from worker.domain.errors import InvalidError


def cli(*argv: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VEXORA_", "REDIS_URL"))}
    clean.update(env)
    return subprocess.run([sys.executable, "-m", "worker.cli", *argv], env=clean, capture_output=True, text=True,
                          timeout=60)


def test_an_unknown_variable_names_the_closest_known_one():
    found = unknown_variables({"VEXORA_READ_TIMOUT": "3", "VEXORA_READ_TIMEOUT": "3", "VEXORA_ZZZZ": "1",
                               "OTHER": "x"})
    assert found == {"VEXORA_READ_TIMOUT": "VEXORA_READ_TIMEOUT", "VEXORA_ZZZZ": ""}
    assert {"VEXORA_DISPLAY_TZ", "VEXORA_APP_SECRET_FILE", "VEXORA_BASE_URL"} <= known_variables()


def test_every_variable_the_code_reads_is_known():
    """Each VEXORA_* name in the code (settings, tools, tests) is known: none of ours is warned about."""
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    names = set()
    for folder in ("worker", "scripts", "deploy"):
        for path in (root / folder).rglob("*"):
            if path.is_file() and path.suffix in {".py", ".sh", ".yml", ".yaml", ""}:
                names |= set(re.findall(r"\bVEXORA_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(errors="replace")))
    names -= {"VEXORA_IP_"}
    assert not sorted(n for n in names if n not in known_variables())


def test_the_cli_warns_about_a_typo_and_still_runs():
    done = cli("review", "--help", VEXORA_READ_TIMOUT="3")
    assert done.returncode == 0
    assert "VEXORA_READ_TIMOUT is set but no setting has that name" in done.stderr
    assert "did you mean VEXORA_READ_TIMEOUT?" in done.stderr
    assert "did you mean" not in cli("review", "--help", VEXORA_READ_TIMEOUT="3").stderr


@pytest.mark.parametrize("argv", [("review", "query", "T-1"), ("reconcile", "--now")])
def test_a_command_needing_the_gateway_names_the_missing_variables_first(argv):
    # REDIS_URL points nowhere: the command must stop before it reaches Redis or the gateway
    done = cli(*argv, REDIS_URL="redis://127.0.0.1:1/0")
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("vexora-checkout cannot start: missing gateway settings")
    assert lines[1:] == ["  VEXORA_BASE_URL: not set", "  VEXORA_MERCHANT_NO: not set",
                         "  VEXORA_APP_SECRET (or VEXORA_APP_SECRET_FILE): not set"]
    assert "no usable answer" not in done.stderr and "Redis" not in done.stderr

    partly = cli(*argv, REDIS_URL="redis://127.0.0.1:1/0", VEXORA_BASE_URL="http://127.0.0.1:1",
                 VEXORA_MERCHANT_NO="M-1")
    assert partly.stderr.strip().splitlines()[1:] == ["  VEXORA_APP_SECRET (or VEXORA_APP_SECRET_FILE): not set"]


def test_errors_are_one_plain_line_a_problem():
    exc = InvalidError("endpoint refused", {"url": ["must be https", "must not be private"],
                                            "types": {"0": ["unknown event type"]}})
    assert problem_lines(exc) == ("endpoint refused\nurl: must be https\nurl: must not be private\n"
                                  "types.0: unknown event type")
    assert "{" not in problem_lines(exc) and "[" not in problem_lines(exc)
    assert problem_lines(InvalidError("just this")) == "just this"

"""Bad settings stop every entry point before it does anything, with one line per problem and no
traceback: the ``vexora-checkout`` command, ``celery -A worker`` (worker, beat, Flower) and
``gunicorn worker.web:app``, each run for real. None of them gets as far as Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MARK = "Qm7MARKp4"
BAD = {
    "VEXORA_BASE_URL": "https://gateway.example.jp",  # not the sandbox: placeholders are refused
    "VEXORA_JOB_TTL_SECONDS": "0",
    "VEXORA_IP_LIMITS": "maybe",
    "VEXORA_API_TOKEN": f"change-me-{MARK}",
    "VEXORA_WEBHOOK_RETRY_SCHEDULE": "5,-1",
}
BAD_VARS = ["VEXORA_JOB_TTL_SECONDS", "VEXORA_IP_LIMITS", "VEXORA_API_TOKEN", "VEXORA_WEBHOOK_RETRY_SCHEDULE"]


def run(argv: list[str], extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VEXORA_", "CELERY_", "FLOWER_")) and k != "REDIS_URL"}
    env.update({"REDIS_URL": "redis://127.0.0.1:9/0", **extra})  # nothing listens there: nothing may try
    # a process that accepted the settings would run on: the timeout fails the test
    return subprocess.run(argv, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=90)


def assert_refused(done: subprocess.CompletedProcess, status: int, variables: list[str]) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == status, output
    for var in variables:
        assert f"  {var}: " in done.stderr, output
    assert "Traceback" not in output
    assert MARK not in output


@pytest.mark.parametrize("args", [["status", "T-1"], ["enqueue", "-"], ["reconcile", "--now"], ["review"],
                                  ["webhooks", "list"], ["worker"], ["beat"], ["web"], ["sandbox"]])
def test_every_cli_command_refuses_bad_settings_with_exit_2(args):
    assert_refused(run([str(BIN / "vexora-checkout"), *args], BAD), 2, BAD_VARS)


def test_help_needs_no_settings():
    for args in (["--help"], ["status", "--help"], ["webhooks", "add", "--help"]):
        done = run([str(BIN / "vexora-checkout"), *args], BAD)
        assert done.returncode == 0 and "Usage:" in done.stdout, done.stderr


@pytest.mark.parametrize("command", [["worker", "--pool", "threads"], ["beat"]])
def test_celery_refuses_bad_settings(command):
    assert_refused(run([str(BIN / "celery"), "-A", "worker", *command], BAD), 2, BAD_VARS)


def test_flower_refuses_its_placeholder_password():
    done = run([str(BIN / "celery"), "-A", "worker", "flower", "--port=9"],
               {"VEXORA_BASE_URL": "https://gateway.example.jp", "FLOWER_BASIC_AUTH": f"admin:changeme{MARK}"})
    assert_refused(done, 2, ["FLOWER_BASIC_AUTH"])


def test_celery_refuses_a_broker_given_on_its_command_line():
    # `celery -b` sets CELERY_BROKER_URL, which Celery would prefer to the settings' broker
    done = run([str(BIN / "celery"), "-b", f"redis://:{MARK}@127.0.0.1:9/1", "-A", "worker", "worker"], {})
    assert_refused(done, 2, ["CELERY_BROKER_URL"])
    assert "VEXORA_BROKER_URL" in done.stderr


def test_gunicorn_stops_instead_of_restarting_workers():
    done = run([str(BIN / "gunicorn"), "worker.web:app", "--bind", "127.0.0.1:0", "--workers", "2",
                "--no-control-socket"], BAD)
    # 4: the arbiter's "App failed to load" — a worker failing any other way would be replaced
    assert_refused(done, 4, BAD_VARS)
    assert "App failed to load" in done.stderr

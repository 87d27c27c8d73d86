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


GUNICORN_CONFIGS = {
    # what the repository's gunicorn.conf.py must do first (its other settings do not matter here)
    "a config that checks the settings": "from worker.config.startup import settings_or_exit\n\nsettings_or_exit()\n",
    "the repository's gunicorn.conf.py": None,
}


@pytest.mark.parametrize("config", sorted(GUNICORN_CONFIGS))
def test_gunicorn_refuses_bad_settings_before_forking_a_worker(config, tmp_path):
    path = ROOT / "gunicorn.conf.py"
    if GUNICORN_CONFIGS[config] is not None:
        path = tmp_path / "gunicorn.conf.py"
        path.write_text(GUNICORN_CONFIGS[config])
    elif not path.exists():
        pytest.skip("no gunicorn.conf.py in this tree")
    done = run([str(BIN / "gunicorn"), "-c", str(path), "worker.web:app", "--bind", "127.0.0.1:0",
                "--workers", "2", "--no-control-socket"], BAD)
    assert_refused(done, 2, BAD_VARS)
    assert "Booting worker" not in done.stderr and done.stderr.count("cannot start") == 1


def test_a_gunicorn_worker_that_finds_bad_settings_stops_gunicorn(tmp_path):
    """Without the config's check (an empty one), the worker's import fails: gunicorn stops with
    "App failed to load" (4) instead of starting new workers forever. One worker: with two,
    gunicorn 27 itself may print a traceback when the second fails while it halts."""
    empty = tmp_path / "empty.conf.py"
    empty.write_text("")
    done = run([str(BIN / "gunicorn"), "-c", str(empty), "worker.web:app", "--bind", "127.0.0.1:0",
                "--workers", "1", "--no-control-socket"], BAD)
    assert_refused(done, 4, BAD_VARS)
    assert "App failed to load" in done.stderr


def test_the_demo_checks_the_environment_it_builds_before_starting_anything():
    # no VEXORA_BASE_URL (the demo refuses one with a message of its own): only the bad tunable
    done = run([str(BIN / "vexora-checkout"), "demo", "--size", "15", "--timeout", "30"],
               {"VEXORA_JOB_TTL_SECONDS": "0"})
    assert_refused(done, 2, ["VEXORA_JOB_TTL_SECONDS"])

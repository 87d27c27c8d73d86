"""gunicorn.conf.py as gunicorn itself reads it (``--print-config``), from a directory that is not
the repository's: its defaults, the variables it honours, and the command line winning over it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from worker.web.serve import gunicorn_conf, web_argv
from tests.support.processes import ROOT

VARIABLES = ("PORT", "WEB_CONCURRENCY", "GUNICORN_THREADS", "VEXORA_LOG_FORMAT")


def gunicorn_config(cwd, *flags: str, **env: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    done = subprocess.run([sys.executable, *web_argv(*flags), "--print-config"], cwd=cwd, env={**base, **env},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    settings = {}
    for line in done.stdout.splitlines():
        name, _, value = line.partition(" = ")
        settings[name.strip()] = value.strip()
    return settings


def test_the_file_is_the_repositorys_given_by_its_path():
    assert web_argv()[:5] == ["-m", "gunicorn", "worker.web:app", "-c", str(ROOT / "gunicorn.conf.py")]
    assert gunicorn_conf().is_absolute()


def test_defaults(tmp_path):
    config = gunicorn_config(tmp_path)
    assert config["bind"] == "['127.0.0.1:8000']"
    assert (config["worker_class"], config["workers"], config["threads"]) == ("gthread", "2", "8")
    assert config["control_socket_disable"] == "True"
    assert "'fmt': 'logfmt'" in config["logconfig_dict"]


def test_port_web_concurrency_threads_and_log_format_from_the_environment(tmp_path):
    config = gunicorn_config(tmp_path, PORT="5001", WEB_CONCURRENCY="3", GUNICORN_THREADS="4",
                             VEXORA_LOG_FORMAT="json")
    assert config["bind"] == "['0.0.0.0:5001']"
    assert (config["workers"], config["threads"]) == ("3", "4")
    assert "'fmt': 'json'" in config["logconfig_dict"]


@pytest.mark.parametrize("env", [{}, {"PORT": "5001", "WEB_CONCURRENCY": "3", "GUNICORN_THREADS": "4"}])
def test_the_command_line_wins(tmp_path, env):
    config = gunicorn_config(tmp_path, "--bind", "127.0.0.1:6001", "--workers", "5", "--threads", "2", **env)
    assert (config["bind"], config["workers"], config["threads"]) == ("['127.0.0.1:6001']", "5", "2")


def test_a_bad_log_format_stops_gunicorn(tmp_path):
    base = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    done = subprocess.run([sys.executable, *web_argv(), "--print-config"], cwd=tmp_path,
                          env={**base, "VEXORA_LOG_FORMAT": "xml"}, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "VEXORA_LOG_FORMAT" in done.stderr

"""What an install of the project holds: every module, the templates, one version everywhere.

The wheel is built here, offline, from a copy of the sources, with setuptools (the build backend
pyproject.toml names): an editable install (the venv the tests run in) finds modules in the
checkout whatever pyproject.toml lists, so only a real build shows a package left out.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import worker

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "worker", "schemas")


def _build_wheel(tmp_path: Path) -> Path:
    src, out = tmp_path / "src", tmp_path / "out"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    # a child process: setuptools builds in the current directory and keeps global state
    subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                    "build_meta.build_wheel(sys.argv[1])", str(out)],
                   cwd=src, check=True, capture_output=True, timeout=120)
    [wheel] = out.glob("*.whl")
    return wheel


def test_the_wheel_holds_every_module_and_template_and_the_version(tmp_path):
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        version = Parser().parsestr(archive.read(metadata).decode())["Version"]
    wanted = {str(p.relative_to(ROOT)) for top in ("worker", "schemas") for p in (ROOT / top).rglob("*")
              if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".html", ".lua")}
    assert "worker/webhooks/delivery.py" in wanted and "worker/web/templates/ops/index.html" in wanted
    assert "worker/store/lua/move.lua" in wanted  # the store's scripts are files of the package
    assert sorted(wanted - names) == []
    assert version == worker.__version__


def test_installed_metadata_has_the_package_version():
    # an editable install keeps the metadata of its install: a stale one is reinstalled by setup.sh
    assert importlib.metadata.version("vexora-checkout") == worker.__version__


def test_worker_is_a_regular_package_that_imports_nothing():
    assert Path(worker.__file__) == ROOT / "worker" / "__init__.py"
    assert list(worker.__path__) == [str(ROOT / "worker")]  # no other worker/ merged in
    # a fresh interpreter: what importing the package alone loads
    loaded = subprocess.run([sys.executable, "-c", "import sys, worker; print(' '.join(sorted(sys.modules)))"],
                            capture_output=True, text=True, check=True, timeout=30).stdout.split()
    assert [m for m in loaded if m.startswith(("worker.", "celery", "kombu", "redis"))] == []


def test_the_command_prints_its_version():
    command = Path(sys.executable).parent / "vexora-checkout"  # the installed entry point
    for flag in ("--version", "-V"):
        done = subprocess.run([str(command), flag], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"vexora-checkout, version {worker.__version__}\n"


def test_celery_finds_the_app_in_worker_celery():
    # `celery -A worker` looks for worker.celery because the package has no app attribute;
    # `report` prints the app's settings without connecting to the broker
    done = subprocess.run([sys.executable, "-m", "celery", "-A", "worker", "report"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "broker_transport: 'worker.runtime.broker:Transport'" in done.stdout

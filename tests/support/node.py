"""tests/node/ (the celery-node producer) installed into a temp dir, shared by the tests using it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

__all__ = ["HAVE_NODE", "NODE_DIR", "install_node_producer"]

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
HAVE_NODE = bool(shutil.which("node") and shutil.which("npm"))


def install_node_producer(workdir: Path) -> Path:
    """Copy tests/node/ into ``workdir`` and install its locked dependencies (``npm ci``)."""
    for name in ("package.json", "package-lock.json", "enqueue.js"):
        shutil.copy2(NODE_DIR / name, workdir / name)
    try:
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=workdir, capture_output=True,
                              text=True, timeout=600)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"npm ci timed out:\n{exc.stdout}\n{exc.stderr}")
    if done.returncode != 0:
        pytest.fail(f"npm ci failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return workdir

"""Real processes for integration tests: ``worker.local.services.Service`` run from the repository root,
with its log at a path the test chooses."""

from __future__ import annotations

import sys
from pathlib import Path

from worker.local.services import Service

__all__ = ["Process", "python_cmd"]

ROOT = Path(__file__).resolve().parents[2]


def python_cmd(*args: str) -> list[str]:
    return [sys.executable, *args]


class Process(Service):
    """A child process in its own session; its stdout and stderr go to ``log_path``."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_path: Path):
        super().__init__(name, cmd, env, log_path.parent, log_path=log_path, cwd=ROOT)

    @property
    def cmd(self) -> list[str]:
        return self.argv

    def stop(self, timeout: float = 15.0) -> None:
        super().stop(timeout)

"""The reliability suite: real processes, injected faults, the sandbox's own counts as the truth.

CI runs the bounded sizes; ``VEXORA_RELIABILITY_FULL=1`` runs the full ones. Each scenario adds
one figure line (jobs, faults injected, lost, created twice, time to settle), printed at the end
of the run and appended to ``tests/reliability/last-figures.txt``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

FULL = os.environ.get("VEXORA_RELIABILITY_FULL", "").lower() in {"1", "true", "yes"}
_FIGURES: list[str] = []


class Figures:
    def add(self, scenario: str, **numbers) -> None:
        parts = [f"{key}={value:.1f}" if isinstance(value, float) else f"{key}={value}"
                 for key, value in numbers.items()]
        _FIGURES.append(f"{scenario}: " + " ".join(parts))


@pytest.fixture(scope="session")
def figures() -> Figures:
    return Figures()


@pytest.fixture(scope="session")
def full_size() -> bool:
    return FULL


def size(bounded: int, full: int) -> int:
    return full if FULL else bounded


def pytest_terminal_summary(terminalreporter):
    if not _FIGURES:
        return
    terminalreporter.section(f"reliability figures ({'full' if FULL else 'bounded'} size)")
    for line in _FIGURES:
        terminalreporter.write_line(line)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(Path(__file__).parent / "last-figures.txt", "a", encoding="utf-8") as out:
        out.write(f"# {stamp} ({'full' if FULL else 'bounded'})\n" + "\n".join(_FIGURES) + "\n")

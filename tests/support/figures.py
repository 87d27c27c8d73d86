"""The reliability suite's figure lines: one per scenario (jobs, faults injected, lost, created
twice, time to settle), printed at the end of the run and appended to
``tests/reliability/last-figures.txt``. Under pytest-xdist each worker hands its lines to the
controlling process (``tests/conftest.py``), which prints them all.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

FULL = os.environ.get("VEXORA_RELIABILITY_FULL", "").lower() in {"1", "true", "yes"}
LINES: list[str] = []
LAST = Path(__file__).resolve().parents[1] / "reliability" / "last-figures.txt"


class Figures:
    def add(self, scenario: str, **numbers) -> None:
        parts = [f"{key}={value:.1f}" if isinstance(value, float) else f"{key}={value}"
                 for key, value in numbers.items()]
        LINES.append(f"{scenario}: " + " ".join(parts))


def report(terminalreporter) -> None:
    if not LINES:
        return
    label = "full" if FULL else "bounded"
    terminalreporter.section(f"reliability figures ({label} size)")
    for line in LINES:
        terminalreporter.write_line(line)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(LAST, "a", encoding="utf-8") as out:
        out.write(f"# {stamp} ({label})\n" + "\n".join(LINES) + "\n")

"""Results as tables: printed while the run goes, and written to BENCHMARKS.md at the end."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from dataclasses import dataclass, field

import psutil

__all__ = ["Section", "Table", "machine", "render_markdown", "render_text"]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[object]] = field(default_factory=list)
    title: str = ""

    def add(self, *row: object) -> None:
        self.rows.append(list(row))


@dataclass
class Section:
    """One benchmark's outcome: what it means, its tables, and notes on how it was measured."""

    key: str
    title: str
    meaning: str
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    data: dict = field(default_factory=dict)  # raw figures for the summary and other sections
    others: float = 0.0  # CPUs other processes on the machine used meanwhile


def fmt(value: object) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _md_table(table: Table) -> str:
    lines = []
    if table.title:
        lines.append(f"*{table.title}*\n")
    lines.append("| " + " | ".join(table.headers) + " |")
    lines.append("|" + "|".join("---" for _ in table.headers) + "|")
    for row in table.rows:
        lines.append("| " + " | ".join(fmt(v) for v in row) + " |")
    return "\n".join(lines)


def render_text(section: Section) -> str:
    out = [f"\n== {section.title}  ({section.seconds:.0f} s)"]
    for table in section.tables:
        cells = [table.headers] + [[fmt(v) for v in row] for row in table.rows]
        widths = [max(len(str(r[i])) for r in cells) for i in range(len(table.headers))]
        if table.title:
            out.append(f"-- {table.title}")
        for j, row in enumerate(cells):
            out.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
            if j == 0:
                out.append("  ".join("-" * w for w in widths))
    for note in section.notes:
        out.append(f"  * {note}")
    return "\n".join(out)


def _cmd(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine(redis_client) -> dict:
    cpu = "?"
    try:  # psutil does not name the CPU model
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "?")
    except OSError:
        pass
    mem = f"{psutil.virtual_memory().total / 2**30:.1f} GiB"
    import celery
    import kombu
    import redis as redis_py
    import requests
    info = redis_client.info("server")
    return {
        "nproc": _cmd(["nproc"]) or str(os.cpu_count()),
        "memory": mem,
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "redis_py": redis_py.__version__,
        "redis_server": info.get("redis_version", "?"),
        "requests": requests.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def render_markdown(sections: list[Section], host: dict, command: str, mode: str,
                    total_seconds: float, summary: list[str], findings: str) -> str:
    out = ["# Benchmarks", ""]
    out.append("Written by `bench/run.py` from its last run; every figure below comes from that run. "
               "Re-run it after a change and compare ratios, not absolute numbers: the machine is "
               "shared and noisy, so each ratio is measured side by side in one run.")
    out.append("")
    if command.startswith("cd ") and " && " in command:  # a run saved before the command was relative
        command = command.split(" && ", 1)[1]
    out.append("```\n" + command + "\n```")
    out.append("")
    out.append(f"Mode: **{mode}**, whole run {total_seconds / 60:.1f} min. `--quick` runs small sizes "
               "(~2–3 min); `--only NAME` one benchmark (pipeline, scaleout, producer, callbacks, cost, "
               "pools, profile, lease, webhooks, replication); `--render <log dir>/results.pickle` re-writes this file from a saved run. "
               "`BENCH_PYSPY` (a py-spy binary) and `BENCH_GEVENT_SITE` (a site-packages with gevent) are "
               "optional; neither is a project dependency.")
    out.append("")
    out.append("| machine | |\n|---|---|")
    out.append(f"| CPUs (`nproc`) | {host['nproc']} |")
    out.append(f"| CPU | {host['cpu']} |")
    out.append(f"| memory | {host['memory']} |")
    out.append(f"| kernel | {host['kernel']} |")
    out.append(f"| Python | {host['python']} |")
    out.append(f"| Celery / kombu | {host['celery']} / {host['kombu']} |")
    out.append(f"| redis-server / redis-py | {host['redis_server']} / {host['redis_py']} |")
    out.append(f"| requests | {host['requests']} |")
    out.append(f"| code measured | sha256 of `worker/**/*.py`, `*.lua` + `schemas/**/*.py`: `{host.get('code', '?')}` |")
    out.append(f"| sandbox | {host.get('sandbox', '?')} |")
    out.append(f"| load generator (callbacks) | {host.get('load generator', '?')} |")
    out.append(f"| date | {host['date']} |")
    out.append("")
    out.append("Everything runs on this one machine, over loopback: a private `redis-server`, the "
               "sandbox gateway (one Python process), the Celery workers, gunicorn and the load "
               "generators all share the same cores, so no figure here is a production capacity; the "
               "ratios and the costs per job are what carry over. Other people's test suites ran on "
               "the same machine meanwhile; each section ends with how many CPUs they took.")
    out.append("")
    busy = [f"{s.key} {s.others:.2f}" for s in sections]
    out.append("CPUs used by other processes, per benchmark: " + ", ".join(busy) + ".")
    out.append("")
    if summary:
        out.append("## Headline")
        out.append("")
        out.extend(f"- {line}" for line in summary)
        out.append("")
    for section in sections:
        out.append(f"## {section.title}")
        out.append("")
        out.append(f"**What it means:** {section.meaning}")
        out.append("")
        for table in section.tables:
            out.append(_md_table(table))
            out.append("")
        for note in section.notes:
            out.append(f"- {note}")
        if section.notes:
            out.append("")
        out.append(f"_({section.seconds:.0f} s)_")
        out.append("")
    if findings:
        out.append(findings.rstrip())
        out.append("")
    return "\n".join(out)

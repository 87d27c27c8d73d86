"""Run the benchmarks: ``.venv/bin/python -m bench.run [--quick] [--only NAME ...]``.

Starts a private Redis, the sandbox gateway, Celery workers and gunicorn as real processes, runs
each benchmark, prints its tables as it goes and writes BENCHMARKS.md (machine, command, tables,
findings) at the end. ``--quick`` uses small sizes (a few minutes); the default the full ones.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> (module, sizes for --quick, full sizes)
BENCHMARKS = {
    "pipeline": ("bench.pipeline",
                 {"concurrency": 32, "jobs": 400, "rounds": 1},
                 {"concurrency": 32, "jobs": 2000, "rounds": 3}),
    "scaleout": ("bench.scaleout",
                 {"concurrency": 16, "jobs_per_worker": 250, "rounds": 1, "workers": [1, 2, 4]},
                 {"concurrency": 16, "jobs_per_worker": 1200, "rounds": 2, "workers": [1, 2, 4]}),
    "producer": ("bench.producer", {"calls": 1000}, {"calls": 5000}),
    "callbacks": ("bench.callbacks",
                  {"callbacks": 3000, "web_shapes": [(2, 8)], "time_limit": 30},
                  {"callbacks": 12000, "web_shapes": [(2, 8), (2, 32), (4, 4)], "time_limit": 60}),
    "cost": ("bench.cost",
             {"jobs": 200, "load_jobs": 600, "rss_concurrency": 64},
             {"jobs": 1000, "load_jobs": 3000, "rss_concurrency": 64}),
    "pools": ("bench.pools",
              {"jobs": 250, "concurrency": 32, "prefork": 8},
              {"jobs": 1500, "concurrency": 32, "prefork": 8}),
    "profile": ("bench.profile",
                {"jobs": 150, "pyspy_seconds": 6},
                {"jobs": 600, "pyspy_seconds": 15}),
    "lease": ("bench.lease", {"calls": 2000}, {"calls": 10000}),
    "webhooks": ("bench.webhooks", {"events": 300, "jobs": 400, "rounds": 1},
                 {"events": 2000, "jobs": 2000, "rounds": 3}),
    "replication": ("bench.replication",
                    {"concurrency": 32, "jobs": 400, "rounds": 1, "calls": 500},
                    {"concurrency": 32, "jobs": 2000, "rounds": 3, "calls": 3000}),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (the whole run in ~3 min)")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"), help="where to write the report")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--render", metavar="RESULTS", default=None,
                        help="only re-write the report from a saved results.pickle of an earlier run")
    args = parser.parse_args(argv)

    os.chdir(ROOT)  # workers and gunicorn import `worker` from the project
    import importlib

    from bench.findings import findings, headline
    from bench.loadgen import wrk_available
    from bench.procs import Bench
    from bench.report import machine, render_markdown, render_text

    if args.render:
        with open(args.render, "rb") as fh:
            saved = pickle.load(fh)
        return _write(args, saved, findings, headline, render_markdown)

    names = args.only or list(BENCHMARKS)
    mode = "quick" if args.quick else "full"
    log_dir = Path(tempfile.mkdtemp(prefix="vexora-bench-"))
    print(f"bench: {mode} mode, {', '.join(names)}; process logs in {log_dir}", flush=True)
    started = time.perf_counter()
    bench = Bench(log_dir)
    sections, failed = [], []
    try:
        bench.start_sandbox()
        host = machine(bench.redis)
        host["sandbox"] = "`vexora-checkout sandbox` as shipped (one Python process)"
        host["code"] = _code_digest()
        host["load generator"] = ("wrk " + _wrk_version() if wrk_available() and not os.environ.get("BENCH_NO_WRK")
                                  else "Python asyncio (wrk not found, or BENCH_NO_WRK set)")
        for name in names:
            module, quick, full = BENCHMARKS[name]
            sizes = quick if args.quick else full
            print(f"\n-- {name} {sizes}", flush=True)
            before = _machine_cpu()
            try:
                section = importlib.import_module(module).run(bench, dict(sizes, quick=args.quick))
            except Exception:  # one broken benchmark must not lose the others' figures
                failed.append(name)
                traceback.print_exc()
                continue
            section.others = _others_load(before, _machine_cpu())
            section.notes.append(f"Other processes on the machine (not this run's) used "
                                 f"{section.others:.2f} of its {os.cpu_count()} CPUs on average "
                                 "during this benchmark (the machine's busy CPU time, psutil's "
                                 "`cpu_times()`, less this run's process tree).")
            sections.append(section)
            print(render_text(section), flush=True)
    finally:
        bench.close()
    total = time.perf_counter() - started
    # names only: their values are paths on this machine, and the command is run from the repository
    env = "".join(f"{k}=... " for k in ("BENCH_PYSPY", "BENCH_GEVENT_SITE") if os.environ.get(k))
    command = (env + ".venv/bin/python -m bench.run"
               + (" --quick" if args.quick else "") )
    if args.only:
        command += "".join(f" --only {n}" for n in args.only)
    saved = {"sections": sections, "host": host, "command": command, "mode": mode, "total": total,
             "failed": failed}
    results = log_dir / "results.pickle"
    with open(results, "wb") as fh:
        pickle.dump(saved, fh)
    print(f"bench: results saved in {results} (re-render with --render {results})")
    return _write(args, saved, findings, headline, render_markdown)


def _write(args, saved: dict, findings, headline, render_markdown) -> int:
    order = list(BENCHMARKS)  # the report's order, whatever order they ran in
    sections = sorted(saved["sections"], key=lambda s: order.index(s.key) if s.key in order else len(order))
    failed = saved["failed"]
    total = saved["total"]
    by_key = {s.key: s for s in sections}
    lines = headline(by_key)
    print("\n== Headline\n" + "\n".join("  " + ln for ln in lines))
    print(f"\nbench: done in {total / 60:.1f} min" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    if not args.no_write and sections:
        text = render_markdown(sections, saved["host"], saved["command"], saved["mode"], total, lines,
                               findings(by_key))
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"bench: wrote {args.output}")
    return 1 if failed else 0


def _machine_cpu() -> tuple[float, float, float]:
    """(wall, busy CPU seconds of the whole machine, CPU seconds of this run's process tree)."""
    from bench.procs import cpu_seconds, machine_busy_seconds
    return time.perf_counter(), machine_busy_seconds(), cpu_seconds(os.getpid())


def _others_load(before, after) -> float:
    wall = after[0] - before[0]
    other = (after[1] - before[1]) - (after[2] - before[2])
    return max(0.0, other / wall) if wall > 0 else 0.0


def _code_digest() -> str:
    """A short digest of the code measured (worker/ and schemas/), to tell runs of other code apart."""
    import hashlib
    digest = hashlib.sha256()
    files = [p for d in ("worker", "schemas") for pattern in ("*.py", "*.lua") for p in (ROOT / d).rglob(pattern)]
    for path in sorted(files):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _wrk_version() -> str:
    import subprocess
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    return out.split()[1] if len(out.split()) > 1 else "?"


if __name__ == "__main__":
    sys.exit(main())

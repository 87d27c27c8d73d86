"""Benchmark 7 — where the time goes: py-spy on a worker under load at 0 ms (when a py-spy binary
is found: ``BENCH_PYSPY`` or ``py-spy`` on PATH; it is not a project dependency), cProfile of an
in-process ``Submitter`` against the sandbox, per-step micro timings, and what the HTTP client
itself costs (requests vs urllib3, which the gateway client uses).
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import shutil
import subprocess
import tempfile
import threading
import time
import timeit
from collections import Counter
from pathlib import Path

import requests

from bench.procs import Bench
from bench.report import Section, Table
from worker.gateway.signing import sign

__all__ = ["run"]

THREADS = 16  # threads per worker process, as shipped (docker-compose.yml, Procfile)


# -- py-spy ----------------------------------------------------------------------------------------
def _pyspy() -> str | None:
    return os.environ.get("BENCH_PYSPY") or shutil.which("py-spy")


_ROOT = Path(__file__).resolve().parents[1]
# the project's own files, as py-spy prints them (a bare file name)
_OWN = {p.name for d in ("worker", "schemas") for p in (_ROOT / d).rglob("*.py")} - {"__init__.py"}
# leaf frames of a thread that is blocked, not computing (py-spy's --nonblocking idle guess misses some)
_WAITING = {"readinto", "_read_from_socket", "recv", "recv_into", "poll", "select", "wait", "_worker",
            "acquire", "get", "sleep", "_wait_for_tstate_lock", "readline", "accept", "_epoll.poll"}


def _where(frame: str) -> str:
    inside = frame[frame.rfind("(") + 1:].rstrip(")")
    return inside.split(":", 1)[0]


def _ours(frame: str) -> bool:
    return _where(frame) in _OWN


def _name(frame: str) -> str:
    return frame.split(" (", 1)[0]


def _lib(frame: str) -> str:
    path = _where(frame)
    return path.split("/", 1)[0] if "/" in path else path


def _waiting(leaf: str) -> bool:
    name = _name(leaf)
    return name in _WAITING or name.rsplit(".", 1)[-1] in _WAITING


def analyse_pyspy(raw: str) -> tuple[Table, Table, int]:
    """Samples of the worker: by thread role (computing vs blocked) and, for computing samples,
    by the path through our code down to the first library call it makes."""
    roles: Counter = Counter()
    blocked: Counter = Counter()
    paths: Counter = Counter()
    total = computing = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        thread, frames = frames[0], frames[1:]
        if not frames:
            continue
        if "ThreadPoolExecutor" in thread or any(_name(f) == "apply_target" for f in frames):
            ours = [i for i, f in enumerate(frames) if _ours(f) and _name(f) != "submit"]
            role = ("task thread: the task's own code (Submitter.submit …)" if ours
                    else "task thread: Celery around the task (trace, events, ack) or idle")
        elif "MainThread" in thread:
            ours = []
            role = "main thread: consumer (broker I/O, message decode, dispatch)"
        else:
            ours = []
            role = "other threads (events, heartbeat, timers)"
        roles[role] += n
        if _waiting(frames[-1]):
            blocked[role] += n
            continue
        computing += n
        if ours:
            last = ours[-1]
            path = " › ".join(_name(frames[i]) for i in ours[:3])
            if len(ours) > 3:
                path += " › … › " + _name(frames[last])
            if last + 1 < len(frames):
                path += f" → {_name(frames[last + 1])} [{_lib(frames[last + 1])}]"
        else:
            tail = next((f for f in reversed(frames) if "/" in _where(f)), frames[-1])
            path = f"({role.split(':')[0]}) {_name(tail)} [{_lib(tail)}]"
        paths[path] += n
    by_role = Table(["worker thread", "samples", "blocked (socket read, queue wait)", "computing",
                     "share of computing"],
                    title="py-spy: the worker's samples by thread (blocked = the leaf frame waits)")
    for role, n in roles.most_common():
        c = n - blocked[role]
        by_role.add(role, n, blocked[role], c, f"{c / computing:.0%}" if computing else "–")
    top = Table(["path (our frames › … → first library call)", "samples", "share of computing"],
                title="py-spy: the 18 heaviest computing paths")
    for path, n in paths.most_common(18):
        top.add(path.replace("|", "/"), n, f"{n / computing:.1%}")
    return by_role, top, total


def pyspy_worker(bench: Bench, seconds: float, jobs: int) -> tuple[list[Table], str]:
    exe = _pyspy()
    if not exe:
        return [], ("py-spy not found: not a project dependency; to include this part, "
                    "`python3 -m venv ../pyspy && ../pyspy/bin/pip install py-spy` and re-run "
                    "with `BENCH_PYSPY=../pyspy/bin/py-spy`.")
    worker = bench.start_worker(concurrency=THREADS)
    out = Path(tempfile.mkdtemp(prefix="pyspy-", dir=bench.log_dir)) / "worker.raw"
    try:
        bench.gateway_latency(0)
        bench.batch([worker], 64, timeout=60)
        bench.enqueue(jobs)
        spy = subprocess.Popen([exe, "record", "--pid", str(worker.popen.pid), "--duration",
                                str(int(seconds)), "--rate", "200", "--format", "raw", "--threads",
                                "--nonblocking", "--gil", "--output", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(0.5)
        bench.resume([worker], queues=("checkout",))
        log, _ = spy.communicate(timeout=seconds + 60)
        bench.pause([worker], queues=("checkout",))
    finally:
        bench.stop(worker)
        bench.drop_queue("checkout")
    if not out.exists():
        return [], f"py-spy failed: {log[-500:]}"
    by_role, top, total = analyse_pyspy(out.read_text())
    return [by_role, top], (f"py-spy ({os.path.basename(exe)}, from BENCH_PYSPY or PATH): {total} samples at 200 Hz over {seconds:.0f} s of a "
                            f"`--pool threads -c {THREADS}` worker (one process of the shipped shape) draining a backlog at 0 ms gateway latency "
                            f"(`--nonblocking --gil`: only the thread holding the GIL is sampled, so samples are the process's Python CPU; raw stacks in the bench's log folder).")


# -- cProfile of the in-process submit --------------------------------------------------------------
_FOCUS = [
    ("Submitter.submit (all)", "checkout.py", "submit"),
    ("  CheckoutRequestSchema.load (validate)", "marshmallow", "load"),
    ("  JobStore.move (Lua: claim returning the payload; record)", "store.py", "move"),
    ("  JobStore.count_attempt (HSET ipHash + HINCRBY, one pipeline)", "store.py", "count_attempt"),
    ("  build_retrying (tenacity per job)", "retry.py", "build_retrying"),
    ("  GatewayClient.checkout (all)", "gateway.py", "checkout"),
    ("    GatewayClient.signed (MD5 sign)", "gateway.py", "signed"),
    ("    urllib3 request (HTTP round trip)", "urllib3/_request_methods.py", "request"),
    ("    response schema load", "gateway.py", "_post"),
    ("  logging (Logger.info/_log)", "logging/__init__.py", "_log"),
]


def cprofile_submit(bench: Bench, n: int) -> tuple[Table, dict]:
    from worker.domain.masking import mask_contact
    rt = bench.runtime
    store, submitter = rt.store, rt.submitter
    jobs = [bench.payload() for _ in range(n + 5)]
    for job in jobs:
        store.create(job["tradeNo"], job, contact=mask_contact(job), amount=job["amount"])
    bench.gateway_latency(0)
    for job in jobs[:5]:
        submitter.submit(job["tradeNo"])  # warm-up
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for job in jobs[5:5 + n // 2]:
        submitter.submit(job["tradeNo"])
    half = n // 2
    wall_plain = (time.perf_counter() - wall0) / half
    cpu_plain = (time.process_time() - cpu0) / half
    profiler = cProfile.Profile()
    profiler.enable()
    for job in jobs[5 + half:5 + n]:
        submitter.submit(job["tradeNo"])
    profiler.disable()
    calls = n - half
    stats = pstats.Stats(profiler).stats
    table = Table(["part of one submit (in-process, 0 ms gateway)", "ms per submit (cumulative, "
                   "under cProfile)", "calls per submit"],
                  title=f"cProfile: {calls} sequential `Submitter.submit` calls in this process "
                        f"(no Celery; without the profiler: {wall_plain * 1000:.2f} ms wall, "
                        f"{cpu_plain * 1000:.2f} ms CPU of this process per submit)")
    for label, where, func in _FOCUS:
        cum, ncalls = 0.0, 0
        for (file, _line, name), (cc, nc, tt, ct, callers) in stats.items():
            if name != func or where not in file:
                continue
            if label.strip().startswith("CheckoutRequestSchema"):
                # Schema.load called from Submitter.submit only (not the gateway's answers)
                for (cfile, _cl, cname), (_cc, cnc, _tt, cct) in callers.items():
                    if cname == "submit" and "checkout.py" in cfile:
                        cum += cct
                        ncalls += cnc
                continue
            if label.strip().startswith("response schema"):
                sub = _callee_time(stats, (file, _line, name), "marshmallow", "load")
                cum += sub[0]
                ncalls += sub[1]
                continue
            cum += ct
            ncalls += nc
        table.add(label, cum * 1000 / calls, ncalls / calls)
    return table, {"wall_ms": wall_plain * 1000, "cpu_ms": cpu_plain * 1000}


def _callee_time(stats: dict, caller: tuple, where: str, func: str) -> tuple[float, int]:
    """Cumulative time ``caller`` spent in calls to ``func`` (in a file matching ``where``)."""
    for (file, _line, name), (cc, nc, tt, ct, callers) in stats.items():
        if name == func and where in file and caller in callers:
            _cc, cnc, _tt, cct = callers[caller]
            return cct, cnc
    return 0.0, 0


# -- micro timings -----------------------------------------------------------------------------------
def micro(bench: Bench) -> Table:
    from schemas import CallbackSchema, CheckoutResponseSchema
    from worker.store.limits import ip_hash
    from worker.domain.masking import mask_contact
    from worker.gateway.retry import build_retrying
    from worker.gateway.signing import parse_json_keeping_numbers, verify
    from worker.store.jobs import fingerprint
    from bench.procs import callback_body
    rt = bench.runtime
    payload = bench.payload()
    fields = rt.schema.load(payload)
    body = rt.gateway.signed(fields)
    answer = {"code": "0000", "msg": "success", "success": True, "timestamp": 1,
              "data": {"tradeNo": payload["tradeNo"], "platFormTradeNo": "abcdefgh12345678",
                       "status": "0015", "message": "Paying", "remark": "bench",
                       "paymentLink": "http://127.0.0.1:1/cashier/abcdefgh12345678"}}
    response_schema = CheckoutResponseSchema()
    callback_schema = CallbackSchema()
    raw_callback = callback_body(payload["tradeNo"])
    parsed = parse_json_keeping_numbers(raw_callback)
    import logging
    quiet = logging.getLogger("bench.micro.quiet")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    quiet.setLevel(logging.INFO)
    steps = [
        ("CheckoutRequestSchema.load(payload)", lambda: rt.schema.load(payload)),
        ("CheckoutRequestSchema(...) construction", lambda: type(rt.schema)(
            amount_max=rt.settings.amount_max, channel_codes=rt.settings.channel_codes,
            way_codes=rt.settings.way_codes, allow_private_ip=rt.settings.allow_private_ip,
            remark_max_length=rt.settings.remark_max_length, notify_url_default=rt.settings.notify_url)),
        ("CheckoutResponseSchema.load(answer)", lambda: response_schema.load(answer)),
        ("build_retrying(settings) (one per job)", lambda: build_retrying(rt.settings)),
        ("GatewayClient.signed(fields) (MD5)", lambda: rt.gateway.signed(fields)),
        ("json.dumps(body).encode()", lambda: json.dumps(body, ensure_ascii=False).encode("utf-8")),
        ("ip_hash(ip) (HMAC-SHA256)", lambda: ip_hash(payload["ipAddress"], rt.settings.app_secret)),
        ("fingerprint(payload) (enqueue)", lambda: fingerprint(payload)),
        ("mask_contact(payload) (enqueue)", lambda: mask_contact(payload)),
        ("callback: parse_json_keeping_numbers + verify", lambda: verify(parse_json_keeping_numbers(raw_callback),
                                                                         rt.settings.app_secret)),
        ("callback: CallbackSchema.validate", lambda: callback_schema.validate(parsed)),
        ("one logger.info line (handler-less logger)", lambda: quiet.info("state_change tradeNo=%s from=%s to=%s", "x", "a", "b")),
    ]
    table = Table(["step", "µs per call"], title="Micro timings of the steps (timeit, this process)")
    for label, fn in steps:
        number = 200
        best = min(timeit.repeat(fn, number=number, repeat=3)) / number
        table.add(label, best * 1e6)
    return table


# -- the HTTP client's own cost -----------------------------------------------------------------------
def _serve(bench: Bench):
    from worker import sandbox as sb
    server = sb.make_server("127.0.0.1", 0, merchant_no=bench.settings.merchant_no,
                            app_secret=bench.settings.app_secret)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _signed_body(bench: Bench) -> bytes:
    body = bench.runtime.schema.load(bench.payload())
    body["timestamp"] = str(int(time.time() * 1000))
    body["sign"] = sign(body, bench.settings.app_secret)
    return json.dumps(body).encode()


def client_cost(bench: Bench, n: int = 300) -> Table:
    """CPU this process spends per checkout POST: a plain ``requests.Session`` (the bare client's),
    one with ``trust_env = False``, and urllib3's pool directly (what ``GatewayClient`` does)."""
    import urllib3
    server = _serve(bench)
    url = server.url + "/v1/vexora/checkout"
    headers = {"merchantNo": bench.settings.merchant_no, "Content-Type": "application/json"}
    bodies = [_signed_body(bench) for _ in range(3 * n + 30)]
    table = Table(["HTTP client for one checkout POST (sequential, 0 ms sandbox)",
                   "extra CPU µs per request over urllib3", "wall ms per request"])

    def measure(post) -> tuple[float, float]:
        for body in bodies[:10]:
            post(body)
        del bodies[:10]
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for body in bodies[:n]:
            post(body)
        del bodies[:n]
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        return cpu, wall

    try:
        s1 = requests.Session()
        s1.headers.update(headers)
        s2 = requests.Session()
        s2.headers.update(headers)
        s2.trust_env = False
        pool = urllib3.PoolManager()
        runs = [("requests.Session (as the bare client: trust_env on)",
                 lambda b: s1.post(url, data=b, timeout=(3.05, 10)).json()),
                ("requests.Session with `trust_env = False`",
                 lambda b: s2.post(url, data=b, timeout=(3.05, 10)).json()),
                ("urllib3.PoolManager directly (as `GatewayClient` since this session)",
                 lambda b: json.loads(pool.request("POST", url, body=b, headers=headers).data))]
        # the server runs in this process too; the same server work is in every run, so the
        # difference to the urllib3 run is the client's own extra cost
        results = []
        for label, post in runs:
            cpu, wall = measure(post)
            results.append((label, cpu, wall))
        floor = results[-1][1]
        for label, cpu, wall in results:
            table.add(label, (cpu - floor) / n * 1e6 if label != results[-1][0] else float("nan"),
                      wall / n * 1000)
        table.rows[-1][1] = "(reference: 0)"
        table.title = (f"The HTTP client's own cost: extra CPU per request over raw urllib3 "
                       f"(client and server share this process; urllib3 run = "
                       f"{floor / n * 1e6:.0f} µs incl. the server thread)")
    finally:
        server.shutdown()
        server.server_close()
    return table


def run(bench: Bench, sizes: dict) -> Section:
    section = Section(
        "profile", "7. Where the time goes",
        "what one worker spends its CPU on (py-spy), how one submit splits without Celery "
        "(cProfile), what each step costs on its own, and what the HTTP client itself costs.")
    started = time.perf_counter()
    tables, notes = [], []
    spy_tables, spy_note = pyspy_worker(bench, sizes["pyspy_seconds"], sizes["jobs"] * 10)
    tables += spy_tables
    notes.append(spy_note)
    table, plain = cprofile_submit(bench, sizes["jobs"])
    tables.append(table)
    tables.append(micro(bench))
    tables.append(client_cost(bench))
    bench.forget_jobs()
    section.tables = tables
    section.data = {"submit_plain": plain, "pyspy": [t.rows for t in spy_tables]}
    notes.append("cProfile's own overhead inflates the absolute ms (roughly ×2); read the column as "
                 "shares. The in-process submit runs one job at a time against the "
                 "sandbox at 0 ms, with the worker's own Runtime (same schema, store, gateway client).")
    section.notes = notes
    section.seconds = time.perf_counter() - started
    return section

"""Load generators: the bare ``requests`` checkout client (the pipeline's yardstick), wrk for the
callback endpoint, and a Python fallback (asyncio, raw keep-alive sockets) when wrk is absent.
Every loop here is bounded in count and in time.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

from worker.gateway.signing import sign
from worker.waiting import TimedOut, wait_until

__all__ = ["bare_checkout", "percentile", "post_bodies", "wrk_available"]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def bare_checkout(url: str, merchant_no: str, secret: str, fields_for: Callable[[], dict], *,
                  concurrency: int, requests_total: int, time_limit: float) -> dict:
    """POST signed checkouts from ``concurrency`` threads (one Session each) as fast as answered.

    Each thread first sends one untimed request (connection set up), then all start together;
    ``fields_for()`` gives a fresh body's fields (a new tradeNo each). Returns req/s over the
    timed part, the count of answers with code 0000, and per-request latencies.
    """
    per_thread = max(1, requests_total // concurrency)
    ready = threading.Barrier(concurrency + 1)
    go = threading.Event()
    results: list[tuple[int, int, list[float]]] = []
    lock = threading.Lock()
    deadline_box = {}

    def post(session: requests.Session) -> bool:
        body = dict(fields_for())
        body["timestamp"] = str(int(time.time() * 1000))
        body["sign"] = sign(body, secret)
        reply = session.post(url, data=json.dumps(body, ensure_ascii=False).encode("utf-8"), timeout=30)
        return reply.status_code == 200 and reply.json().get("code") == "0000"

    def worker() -> None:
        session = requests.Session()
        session.headers.update({"merchantNo": merchant_no, "Content-Type": "application/json"})
        ok, errors, latencies = 0, 0, []
        try:
            try:
                post(session)  # warm-up: the connection, not timed
            except requests.RequestException:
                errors += 1
            ready.wait(timeout=60)
            go.wait(timeout=60)
            for _ in range(per_thread):
                if time.perf_counter() > deadline_box["at"]:
                    break
                started = time.perf_counter()
                try:
                    ok += post(session)
                except requests.RequestException:
                    errors += 1
                latencies.append(time.perf_counter() - started)
        finally:
            session.close()
            with lock:
                results.append((ok, errors, latencies))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    ready.wait(timeout=60)
    started = time.perf_counter()
    deadline_box["at"] = started + time_limit
    go.set()
    for t in threads:
        t.join(timeout=time_limit + 60)
    elapsed = time.perf_counter() - started
    latencies = [x for _, _, lat in results for x in lat]
    return {"requests": len(latencies), "ok": sum(r[0] for r in results),
            "errors": sum(r[1] for r in results), "seconds": elapsed,
            "rps": len(latencies) / elapsed if elapsed else 0.0, "latencies": latencies}


# -- callback load --------------------------------------------------------------------------------
def wrk_available() -> str | None:
    return shutil.which("wrk")


_WRK_LUA = r"""
-- Each thread sends its own slice of the pre-built bodies exactly once (line i goes to thread
-- i % T). wrk asks for a request whenever a connection is free, so once a thread's slice is all
-- sent it asks for GET /healthz instead (no body repeated: the bench waits for every body to be
-- queued, and a repeat would count as one); it stops when every body of its slice was answered OK.
-- A thread's first request is a GET /healthz too: wrk calls request() once on the first thread's
-- state to check the script, and that call must not use up a body.
local threads, counter = {}, 0
function setup(thread)
  thread:set("id", counter)
  thread:set("nthreads", NTHREADS)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  bodies, sent, ok = {}, 0, 0
  local i = 0
  for line in io.lines(BODIES) do
    if i % nthreads == id then table.insert(bodies, line) end
    i = i + 1
  end
  headers = {["Content-Type"] = "application/json"}
end
function request()
  sent = sent + 1
  local i = sent - 1
  if i < 1 or i > #bodies then return wrk.format("GET", "/healthz") end
  return wrk.format("POST", "/vexora/notify", headers, bodies[i])
end
function response(status, hdrs, body)
  if status == 200 and body == "OK" then ok = ok + 1 end
  if ok >= #bodies then wrk.thread:stop() end
end
function done(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"non2xx":%d,"connect_err":%d,"read_err":%d,' ..
    '"write_err":%d,"timeout_err":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def run_wrk(base_url: str, bodies: list[bytes], *, connections: int, threads: int,
            time_limit: float, log_dir: Path, arrived: Callable[[], int]) -> dict:
    """wrk against POST /vexora/notify, each body sent once.

    wrk's ``-d`` is only the time bound: ``arrived()`` (the messages queued so far) is polled
    every 10 ms, and once every body arrived wrk gets SIGINT and prints its summary. The rate
    is bodies over the seconds from starting wrk to the last arrival.
    """
    work = Path(tempfile.mkdtemp(prefix="bench-wrk-", dir=log_dir))
    bodies_path = work / "bodies.txt"
    bodies_path.write_bytes(b"\n".join(bodies) + b"\n")
    script = work / "notify.lua"
    script.write_text(_WRK_LUA.replace("NTHREADS", str(threads))
                      .replace("BODIES", json.dumps(str(bodies_path))))
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{int(time_limit)}s",
            "--timeout", "15s", "-s", str(script), base_url + "/vexora/notify"]
    out_path = work / "wrk.out"
    with open(out_path, "w") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, text=True)
        seconds = None

        def all_arrived_or_wrk_ended() -> bool:
            nonlocal seconds
            if arrived() >= len(bodies):
                seconds = time.perf_counter() - started
                return True
            return proc.poll() is not None

        try:
            wait_until(all_arrived_or_wrk_ended, timeout=time_limit + 5, interval=0.01, what="every body")
        except TimedOut:
            pass  # the rate is then over what did arrive, below
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = out_path.read_text()
    line = next((ln for ln in text.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{text}")
    summary = json.loads(line[len("WRKJSON "):])
    if seconds is None:  # not all arrived within the bound: rate over what did
        seconds = time.perf_counter() - started
    got = min(arrived(), len(bodies))
    errors = sum(summary[k] for k in ("connect_err", "read_err", "write_err", "timeout_err"))
    return {"tool": f"wrk -t{threads} -c{connections}", "requests": summary["requests"],
            "arrived": got, "seconds": seconds, "rps": got / seconds if seconds else 0.0,
            "wrk_rps": summary["requests"] / (summary["duration_us"] / 1e6) if summary["duration_us"] else 0.0,
            "non2xx": summary["non2xx"], "errors": errors, "p50_ms": summary["p50_us"] / 1000,
            "p90_ms": summary["p90_us"] / 1000, "p99_ms": summary["p99_us"] / 1000}


async def _post_loop(host: str, port: int, bodies: list[bytes], latencies: list[float],
                     statuses: list[int], deadline: float) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for body in bodies:
            if time.perf_counter() > deadline:
                break
            started = time.perf_counter()
            writer.write(b"POST /vexora/notify HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (host.encode(), len(body), body))
            status_line = await reader.readline()
            length, closing = 0, False
            while True:
                header = await reader.readline()
                if header in (b"\r\n", b""):
                    break
                name, _, value = header.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
                if name.strip().lower() == b"connection" and value.strip().lower() == b"close":
                    closing = True
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            statuses.append(int(status_line.split()[1]) if status_line else 0)
            if closing:
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    finally:
        writer.close()


def post_bodies(base_url: str, bodies: list[bytes], *, connections: int, time_limit: float) -> dict:
    """The Python fallback: ``connections`` keep-alive sockets, each sending its share once."""
    host, port = base_url.split("//", 1)[1].split(":")
    latencies: list[float] = []
    statuses: list[int] = []

    async def main() -> float:
        started = time.perf_counter()
        deadline = started + time_limit
        shares = [bodies[i::connections] for i in range(connections)]
        await asyncio.gather(*(_post_loop(host, int(port), share, latencies, statuses, deadline)
                               for share in shares if share))
        return time.perf_counter() - started

    seconds = asyncio.run(main())
    return {"tool": f"python asyncio, {connections} connections", "requests": len(statuses),
            "arrived": len(statuses), "seconds": seconds,
            "rps": len(statuses) / seconds if seconds else 0.0, "wrk_rps": float("nan"),
            "non2xx": sum(1 for s in statuses if s != 200), "errors": 0,
            "p50_ms": percentile(latencies, 50) * 1000, "p90_ms": percentile(latencies, 90) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000}

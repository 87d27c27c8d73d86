"""The headline figures and "What the numbers point at", filled in from the sections' data.

The reasoning below was written against these benchmarks' results; the figures quoted in it are
taken from the run that writes the file, so a re-run after a change shows the new numbers next
to the same argument (check that the argument still holds).
"""

from __future__ import annotations

__all__ = ["headline", "findings"]


def _f(value, spec: str = ".0f", default: str = "?") -> str:
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return default


def _spy_share(prof, match) -> float | None:
    """Sum of the py-spy path shares (fractions) whose path satisfies ``match``."""
    if not prof:
        return None
    for t in prof.tables:
        if t.title.startswith("py-spy: the 18 heaviest"):
            return sum(float(str(r[2]).rstrip("%")) / 100 for r in t.rows if match(str(r[0])))
    return None


def _pct(x) -> str:
    return "?" if x is None else f"{x:.0%}"


def _gevent_shortfall(po) -> str:
    """A sentence when the gevent worker left jobs short of ``paying`` (table 6, "a/b")."""
    g = po.data.get("gevent-32") or {}
    if g.get("broker_lost") == 0:
        return ""  # nothing in the log to explain a shortfall with
    for t in po.tables:
        for row in t.rows:
            if row[0] == "gevent" and "/" in str(row[2]):
                done, total = (int(x) for x in str(row[2]).split("/"))
                if done < total:
                    return (f" In this run it also left {total - done} of {total} jobs short of "
                            "`paying` (so its jobs/s counts the wait up to the bench's time bound): "
                            "its log shows `Connection to broker lost "
                            "(MaxConnectionsError)` mid-drain — kombu's Redis connection pool "
                            "(10 connections by default) is smaller than 32 greenlets acknowledging "
                            "at once — and a message acknowledged on the lost connection waits in "
                            "the unacked set for the visibility timeout (the job stays `queued` "
                            "until then, or until the reconciler re-drives it). Before gevent is "
                            "offered, the broker pool needs `max_connections` ≥ -c.")
    return ""


def headline(by_key: dict) -> list[str]:
    lines = []
    p = by_key.get("pipeline")
    if p and p.data:
        lines += _headline_pipeline(p)
    s = by_key.get("scaleout")
    if s and s.data:
        one = s.data[min(s.data)]["jobs_per_s"]
        parts = [f"{n} → {_f(v['jobs_per_s'])} jobs/s ({_f(v['jobs_per_s'] / (n * one), '.2f')} of linear)"
                 for n, v in sorted(s.data.items())]
        lines.append("Scale-out at 100 ms (2 cores): " + "; ".join(parts) + ".")
    pr = by_key.get("producer")
    if pr and pr.data:
        lines.append(f"Producer: {_f(pr.data['one'])} `enqueue_checkout`/s one at a time, "
                     f"{_f(pr.data['concurrent'])}/s from 8 threads; **{_f(pr.data['batch'])} jobs/s** "
                     f"through `enqueue_checkouts` (500 a call; goal ≥ 5,000: {_met(pr.data['batch'], 5000)}), "
                     f"{_f(pr.data.get('http_batch'))}/s through the batch form of `POST /v1/checkouts`.")
    cb = by_key.get("callbacks")
    if cb and cb.data:
        for shape, v in cb.data.items():
            lines.append(f"Callbacks (gunicorn gthread {shape}, 200 connections): **{_f(v['rps'])} req/s** "
                         f"(goal ≥ 2,500: {_met(v['rps'], 2500)}), gunicorn "
                         f"{_f((v.get('cpu_ms') or {}).get('gunicorn'), '.2f')} ms of CPU per callback, "
                         f"p50 {_f(v['p50'])} ms / p99 {_f(v['p99'])} ms; applied at {_f(v['apply'])} jobs/s "
                         f"by one worker; lost: {v['lost']}.")
        for shape, v in (getattr(cb, "before", None) or {}).items():
            lines.append(f"Callbacks before issue 23 (same run, gunicorn {shape}): {_f(v['rps'])} req/s, gunicorn "
                         f"{_f((v.get('cpu_ms') or {}).get('gunicorn'), '.2f')} ms of CPU per callback.")
    wh = by_key.get("webhooks")
    if wh and wh.data and wh.data.get("cpu_ms_per_event_own"):
        e = wh.data["cpu_ms_per_event_own"]
        lines.append(f"Webhooks, our side (dispatcher {_f(e['dispatcher'], '.2f')} + delivering worker "
                     f"{_f(e['delivering'], '.2f')} + Redis {_f(e['redis'], '.2f')} ms): **{_f(e['our_side'], '.2f')} ms "
                     f"of CPU per event** (goal ≤ 0.3 per job at one event a job: "
                     f"{'met' if e['our_side'] <= 0.3 else 'not met'}), {_f(wh.data['our_side_ms_per_job_own'], '.2f')} "
                     f"per paid job (2 events); the receiver apart: {_f(e['receiver'], '.2f')} ms per event.")
    c = by_key.get("cost")
    if c and c.data:
        d = c.data
        lines.append(f"Cost per job (enqueue + submit + callback): **{_f(d['trips_per_job'], '.1f')} Redis round "
                     f"trips** (goal ≤ 10: {'met' if d['trips_per_job'] <= 10 else 'not met'}; "
                     f"{_f(d['client_per_job'], '.1f')} commands sent, {_f(d['commands_per_job'], '.0f')} "
                     f"counting those inside Lua); our code's share: {_f(d['rt_enqueue'])} + {_f(d['rt_submit'])} + "
                     f"{_f(d['rt_callback'])} round trips; {_f(d['job_bytes'] + d['stream_bytes'], ',.0f')} bytes kept "
                     f"per finished job.")
        lines.append(f"Worker RSS (threads -c {d['rss_c']}): {_f(d['rss_idle'])} MiB idle, "
                     f"{_f(d['rss_load'])} MiB peak under load.")
    po = by_key.get("pools")
    if po and po.data:
        parts = [f"{k} {_f(v['jobs_per_s'])} jobs/s / {_f(v['pss'])} MiB PSS" for k, v in po.data.items()]
        lines.append("Pools at 100 ms: " + "; ".join(parts) + ".")
    rp = by_key.get("replication")
    if rp and rp.data.get("ratio_wait") is not None:
        d = rp.data
        lines.append(f"Replicated acknowledgements (table 10, 100 ms): **{_f(d['ratio_wait'], '.2f')} with one "
                     f"replica and a WAIT per counted request** (goal ≥ 0.85: "
                     f"{'met' if d['ratio_wait'] >= 0.85 else 'not met'}), against {_f(d['ratio_plain'], '.2f')} "
                     f"with one Redis and {_f(d['ratio_no_wait'], '.2f')} through Sentinel without the WAIT, "
                     f"side by side.")
    return lines


def _met(value, goal: float) -> str:
    return "met" if value is not None and value >= goal else "not met"


def _headline_pipeline(p) -> list[str]:
    """Table 1: the pipeline against the naive Celery peer at 100 ms (both shapes) and against
    the bare client at 0 ms (the shipped shape), each with its goal."""
    lines = []
    by_shape = p.data.get("by_shape") or {}
    shapes = [f"{a} × threads -c {b}" for a, b in p.data.get("shapes") or []]
    parts = []
    for name in shapes:
        d = (by_shape.get(name) or {}).get(0.1) or {}
        if d.get("vs_naive") is None:
            continue
        parts.append(f"**{_f(d['vs_naive'], '.2f')}× with {name}** ({_f(d['pipeline'])} vs "
                     f"{_f(d['naive'])} jobs/s; worker CPU {_f((d.get('pipe_cpu') or {}).get('worker'), '.2f')} vs "
                     f"{_f((d.get('naive_cpu') or {}).get('worker'), '.2f')} ms per job): "
                     f"{_met(d['vs_naive'], 1.0)}")
    if parts:
        lines.append("Pipeline vs a naive Celery worker (one task that signs and POSTs; same run, same "
                     "shapes, completion by the sandbox's count of created orders) at 100 ms, goal ≥ 1.0×: "
                     + "; ".join(parts) + ".")
    d100, d0 = p.data.get(0.1, {}), p.data.get(0.0, {})
    before = p.data.get("before") or {}
    if before:
        parts = []
        for latency, d in ((0.1, d100), (0.0, d0)):
            b = before.get(latency)
            if b and d.get("pipe_cpu"):
                parts.append(f"{_f(b['cpu'].get('worker'), '.2f')} → **{_f(d['pipe_cpu'].get('worker'), '.2f')} ms** "
                             f"at {latency * 1000:.0f} ms ({_f(b['rate'])} → {_f(d.get('pipeline'))} jobs/s)")
        if parts:
            lines.append(f"Workers' CPU per job, before issue 23 ({next(iter(before.values()))['revision']}, "
                         f"run from a snapshot in the same rounds) → now, {_shape(p)}: " + "; ".join(parts) + ".")
    if d0.get("ratio") is not None:
        lines.append(f"Pipeline vs a bare requests client (same concurrency) with {_shape(p)}: "
                     f"**{_f(d0['ratio'], '.2f')} at 0 ms** (goal ≥ 0.75: {_met(d0['ratio'], 0.75)}; "
                     f"{_f(d0.get('pipeline'))} jobs/s vs {_f(d0.get('bare'))} req/s), "
                     f"{_f(d100.get('ratio'), '.2f')} at 100 ms ({_f(d100.get('pipeline'))} vs "
                     f"{_f(d100.get('bare'))}).")
    return lines


def _shape(p) -> str:
    shapes = p.data.get("shapes") or []
    return f"{shapes[0][0]} × threads -c {shapes[0][1]}" if shapes else "?"


def _single(p) -> dict | None:
    """The one-process reference shape's figures, by latency (None when it is the default)."""
    by_shape = p.data.get("by_shape") or {}
    shapes = p.data.get("shapes") or []
    if len(shapes) < 2:
        return None
    return by_shape.get(f"1 × threads -c {shapes[1][1]}")


# The full run this session's work started from (code digest ee2402e06e5b, BENCHMARKS.md of
# 2026-11-28 01:42 UTC: one worker process, threads -c 32).
BEFORE = {
    "ratio100": 0.52, "jobs100": 158, "bare100": 301, "ratio0": 0.23, "jobs0": 158, "bare0": 698,
    "cpu100": 5.39, "cpu0": 6.30, "busy": 19.5, "trips": 17.7, "rt_submit": 4, "bytes": 3066,
    "rss": 75.3, "cb_apply": 292,
}


def findings(by_key: dict) -> str:
    p = by_key.get("pipeline")
    c = by_key.get("cost")
    pr = by_key.get("producer")
    po = by_key.get("pools")
    s = by_key.get("scaleout")
    prof = by_key.get("profile")
    cbk = by_key.get("callbacks")
    pd = p.data if p else {}
    d100, d0 = pd.get(0.1, {}), pd.get(0.0, {})
    one = _single(p) if p else None
    cpu100 = (d100.get("pipe_cpu") or {}).get("worker")
    cpu0 = (d0.get("pipe_cpu") or {}).get("worker")
    one_cpu100 = ((one or {}).get(0.1, {}).get("pipe_cpu") or {}).get("worker")
    cd = c.data if c else {}
    loads = [getattr(sec, "others", 0.0) for sec in by_key.values()]
    others = sum(loads) / len(loads) if loads else None
    out = _issue23(by_key)
    out += ["## What the numbers point at", "",
           "_The argument was written against these benchmarks' results; the figures in it are "
           "filled in from the run that wrote this file (`bench/findings.py`), so after a change "
           "re-run and check the argument still holds._", ""]
    out.append(
        "**Where it stands.** A worker process is CPU-bound: one CPython process runs Python on one "
        "core at a time (the GIL), so its threads only turn gateway latency into throughput while "
        f"the process has CPU to spare. A job now costs a worker {_f(cpu100, '.1f')} ms of CPU at "
        f"100 ms and {_f(cpu0, '.1f')} ms at 0 ms (table 1; {BEFORE['cpu100']:.1f} and "
        f"{BEFORE['cpu0']:.1f} ms before this round of work), and the shipped shape — one worker "
        f"process per core, {_shape(p) if p else '?'} here — keeps {_f(d100.get('ratio'), '.2f')} of "
        f"the bare client's throughput at 100 ms"
        + (f", against {_f(one[0.1]['ratio'], '.2f')} for the same 32 threads in one process "
           f"({_f(one[0.1]['in_flight'], '.1f')} of 32 threads busy there, "
           f"{_f(d100.get('in_flight'), '.1f')} in the shipped shape)" if one else "")
        + f". Other processes took {_f(others, '.1f')} of the machine's 2 CPUs on average during "
        "this run (each section's last note), and the ratio moves with what they leave: read it "
        "with the rounds in table 1.")
    out.append("")
    items = []
    # 1. topology
    items.append(
        "**Deploy one worker process per core, 16 threads each (the shipped default).** Table 1: "
        + (f"the same 32 threads give {_f(d100.get('pipeline'))} jobs/s as {_shape(p)} and "
           f"{_f(one[0.1]['pipeline'])} jobs/s in one process at 100 ms (at 0 ms "
           f"{_f(d0.get('pipeline'))} vs {_f(one[0.0]['pipeline'])})" if one else "?")
        + "; scale-out (table 2) gives "
        + (", ".join(f"{n} worker{'s' if n > 1 else ''} {_f(v['jobs_per_s'])} jobs/s "
                     f"({_f(v['jobs_per_s'] / (n * s.data[min(s.data)]['jobs_per_s']), '.2f')} of linear)"
                     for n, v in sorted(s.data.items()))
           if s and s.data else "?")
        + " at 16 threads each on 2 cores: near linear while a core is free, flat once they are "
        "taken. docker-compose.yml runs 2 replicas of 16 threads; the Procfile's `worker` line is "
        "one such process (`honcho start -c worker=2`, or one per core on a bigger box). Raising "
        "`-c` in one process does not add a core.")
    # 2. what is left of a worker's CPU
    role_rows = {}
    top_paths = []
    if prof:
        for t in prof.tables:
            if t.title.startswith("py-spy: the worker's samples"):
                role_rows = {r[0]: r[4] for r in t.rows}
            if t.title.startswith("py-spy: the 18 heaviest"):
                top_paths = t.rows[:4]
    main = next((v for k, v in role_rows.items() if k.startswith("main thread")), "?")
    wrap = next((v for k, v in role_rows.items() if "Celery around" in k), "?")
    ours = next((v for k, v in role_rows.items() if "task's own" in k), "?")
    sub_client = cd.get("sub_client", {})
    spied = (f"py-spy (table 7): the consumer (main) thread takes {main} of a worker's Python CPU "
             f"and Celery's wrapper around each task {wrap}; the task's own code {ours}. Its heaviest "
             "paths: " + "; ".join(f"{r[0]} {r[2]}" for r in top_paths) + "."
             if role_rows else
             "py-spy was not available for this run (table 7 says how to include it); the last run "
             "with it found the consumer thread and Celery's task wrapper at about half of a "
             "worker's Python CPU, the task's own code the other half.")
    items.append(
        f"**What is left of a worker's CPU is half Celery, half ours.** {spied}"
        + f" Per job the broker side costs {_f(sub_client.get('brpop'), '.1f')} BRPOP, "
        f"{_f(sub_client.get('multi'), '.1f')} MULTI/EXEC pipelines (the `acks_late` unacked "
        f"bookkeeping) and {_f(sub_client.get('publish'), '.2f')} PUBLISH (task events, now "
        "batched) in the submit phase (table 5). What could still go: Celery's own two INFO lines "
        "per task (`Task … received`, `… succeeded`) beside our `state_change` lines, by running "
        "workers at WARNING for `celery.app.trace` and `celery.worker.strategy` (about 3% of a "
        "worker's CPU in py-spy; they stay on because operators read them); and the "
        "per-message work of Celery's consumer itself, which needs Celery changes, not ours.")
    # 3. round trips
    rt_cmds = cd.get("rt_submit_commands") or {}
    items.append(
        f"**Redis round trips: a submit makes {_f(cd.get('rt_submit'))} (was {BEFORE['rt_submit']}); "
        f"a callback {_f(cd.get('rt_callback'))}.** Counted client-side (table 5): "
        + ", ".join(f"{k} ×{_f(v, '.0f')}" for k, v in rt_cmds.items())
        + " per submit — the claim (its script now returns the payload, so there is no HGETALL "
        "first), the attempt count with the payer-IP hash (one pipeline), and the record. The "
        "attempt is counted apart from the claim on purpose: it must be stored before the request "
        "leaves, and only once the job has passed validation and the per-IP limit. "
        f"`CallbackProcessor.apply` does {_f(cd.get('rt_callback'))} (HGETALL, then EVALSHA): the "
        "amount check could move into the move script (pass the paid amount, compare in Lua) for "
        "1; callbacks are a tenth of the submit's traffic, so it is left for when they matter.")
    # 4. bytes per job
    if cd:
        items.append(
            f"**Bytes per finished job: {_f(cd['job_bytes'] + cd['stream_bytes'], ',.0f')} "
            f"(was {BEFORE['bytes']:,}).** The job hash is a {', '.join(cd.get('encoding') or ['?'])} "
            f"({_f(cd.get('job_hash_bytes'), ',.0f')} bytes). Redis turns a hash into a hashtable "
            "for good once one value is longer than `hash-max-listpack-value` (64 by default): the "
            "payload (~0.5 kB of payer data) now lives in a key of its own until it is purged, and "
            "the project's own Redis and the compose Redis run with `hash-max-listpack-value 256` "
            "(`hash-max-ziplist-value` on 6) for the masked `contact`. Operators with their own "
            "Redis should set the same. A million jobs a day kept for the 30-day TTL hold "
            f"~{_f(cd['job_bytes'] * 30e6 / 2**30, '.0f')} GiB; the events stream is capped at "
            f"100,000 entries (~{_f(cd['stream_bytes'] / 4 * 100_000 / 2**20, '.0f')} MiB).")
    # 5. producer
    if pr and pr.data:
        prod = {r[0].strip(): r for r in pr.tables[0].rows}
        send = next((r for k, r in prod.items() if k.startswith("part: Celery send_task")), None)
        one = prod.get("enqueue_checkout, one at a time", [0] * 8)
        before = next((r for k, r in prod.items() if k.startswith("before:")), None)
        items.append(
            f"**Producer: one round trip per `enqueue_checkout`, and a batch producer at "
            f"{_f(pr.data['batch'])} jobs/s.** The job and its first task message are written in one "
            f"Lua step when the broker is the store's Redis: a call costs {_f(one[6])} µs of producer CPU "
            f"({_f(one[5])} µs of wall time) against {_f(before[6] if before else None)} µs "
            f"({_f(before[5] if before else None)} µs) for the path before, the store's create and then "
            f"`send_task` ({_f(send[6] if send else None)} µs of CPU on its own; still the path with "
            f"RabbitMQ or a broker elsewhere), timed in the same run. `enqueue_checkouts` writes 100 create "
            f"steps a round trip and builds the next hundred while Redis runs the last: "
            f"{_f(pr.data['batch'])} jobs/s at {_f(pr.data.get('batch_cpu_us'))} µs of producer CPU a job "
            f"(Redis's CPU beside it: table 3); the batch form of `POST /v1/checkouts` "
            f"{_f(pr.data.get('http_batch'))} jobs/s through gunicorn at "
            f"{_f(pr.data.get('http_batch_cpu_us'))} µs of the web app's CPU a job, most of it the "
            f"marshmallow validation of each item, which the single form does too.")
    # 6. callbacks
    if cbk and cbk.data:
        shape, first = next(iter(cbk.data.items()))
        items.append(
            f"**Callbacks: the web app keeps up; applying them is the slower side.** gunicorn "
            f"{shape} took {_f(first['rps'])} callbacks/s at 200 connections (table 4) and none "
            f"was lost; one worker process applied {_f(first['apply'])}/s (was {BEFORE['cb_apply']}). "
            "A burst queues up safely (acknowledged late) and drains at the workers' pace.")
    # 7. not worth changing
    micro = {}
    if prof:
        for t in prof.tables:
            if t.title.startswith("Micro timings"):
                micro = {r[0]: r[1] for r in t.rows}

    def m(prefix):
        return next((v for k, v in micro.items() if k.startswith(prefix)), None)

    per_job = [m("CheckoutRequestSchema.load"), m("CheckoutResponseSchema.load"), m("build_retrying"),
               m("GatewayClient.signed"), m("ip_hash")]
    total_us = sum(per_job) if all(v is not None for v in per_job) else None
    items.append(
        "**Not worth changing: schema and app construction.** Nothing is built per job: the "
        "checkout schema, the gateway's answer schemas and the callback schema are built once per "
        f"process (constructing `CheckoutRequestSchema` would cost {_f(m('CheckoutRequestSchema(...)'))} µs, "
        f"table 7); per job, `CheckoutRequestSchema.load` is {_f(per_job[0])} µs, the answer's schema "
        f"{_f(per_job[1])} µs, `build_retrying` {_f(per_job[2], '.1f')} µs, signing {_f(per_job[3])} µs, "
        f"`ip_hash` {_f(per_job[4], '.1f')} µs: {_f(total_us)} µs together, "
        f"{_pct(total_us / 1000 / cpu100 if total_us and cpu100 else None)} of a job's CPU.")
    # 8. pool
    if po and po.data:
        g = po.data.get("gevent-32")
        t8, f8, t32 = po.data.get("threads-8"), po.data.get("prefork-8"), po.data.get("threads-32")
        items.append(
            "**Pool: threads.** At the same -c 8, prefork matched threads "
            f"({_f(f8 and f8['jobs_per_s'])} vs {_f(t8 and t8['jobs_per_s'])} jobs/s) for "
            f"{_f(f8 and f8['pss'])} vs {_f(t8 and t8['pss'])} MiB PSS; threads -c 32 gave "
            f"{_f(t32 and t32['jobs_per_s'])} jobs/s in {_f(t32 and t32['pss'])} MiB. "
            + (f"gevent -c 32 gave {_f(g['jobs_per_s'])} jobs/s against threads' "
               f"{_f(t32 and t32['jobs_per_s'])} at the same -c; with the Redis transport its "
               "messages arrived in bursts of about -c every 1–2 s, so it is not a drop-in "
               "speed-up here." + _gevent_shortfall(po)
               if g else "gevent was not installed for this run."))
    # 9. what the lease heartbeat and the metrics add (issues 11 and 13)
    lease = by_key.get("lease")
    if lease and lease.data:
        ld = lease.data
        items.append(
            "**The renewable lease and the metrics cost a job tens of microseconds, not round trips** "
            f"(table 8): holding a lease {_f(ld.get('hold_us'), '.1f')} µs; the heartbeat "
            f"{_f(ld.get('renew_per_job_us'), '.2f')} µs per job ({_f(ld.get('renew_us'))} µs per beat for "
            f"32 leases, one beat per process every 5 s); the token-checked attempt count "
            f"{_f(ld.get('count_guarded_us'))} µs against {_f(ld.get('count_plain_us'))} µs for the plain "
            f"pipeline it replaced (one round trip either way); a gateway request counted and observed "
            f"{_f(ld.get('meter_us'), '.1f')} µs, flushed every 5 s for {_f(ld.get('flush_us'))} µs. State "
            "changes are counted inside the move script. Together well under 1% of a job's CPU; "
            "the pipeline ratio in table 1 is measured with all of them on.")
    # 10. webhooks (issue 12)
    hooks = by_key.get("webhooks")
    if hooks and hooks.data:
        hd = hooks.data
        items.append(
            f"**Webhooks: {_f(hd.get('deliveries_per_s'))} verified deliveries/s to one receiver from the "
            f"webhook worker; the pipeline keeps {_f(hd.get('ratio_on'), '.2f')} of the bare client with "
            f"them on** (table 9, against {_f(hd.get('ratio_off'), '.2f')} with them off in the same run). "
            "An event is recorded inside the move script that makes the change (one HGETALL and one XADD "
            "in Redis, no round trip); its delivery is a Celery message on the `webhooks` queue, read "
            "and claimed a batch at a time (one round trip for up to 20), then a signature, one POST and "
            "one script call each. Deliveries have a worker process of their own (the Procfile's "
            "`webhooks`): when the checkout workers delivered them too, the pipeline kept "
            f"{_f(hd.get('ratio_shared'), '.2f')} — 16 more threads' work under each checkout process's "
            "GIL slows every submit — and a slow receiver could hold checkout threads."
            + (" **Below the 0.85 goal in this run.**" if (hd.get("ratio_on") or 1) < 0.85 else ""))
    # 11. replicated acknowledgements (issue 14)
    rp = by_key.get("replication")
    if rp and rp.data.get("ratio_wait") is not None:
        items.append(_replication(rp.data))
    for i, item in enumerate(items, 1):
        out.append(f"{i}. {item}")
    out.append("")
    out += _before_after(p, c, cbk, one_cpu100)
    out += _this_round(p, c)
    out += SESSION_CHECK
    return "\n".join(out)


def _issue23(by_key: dict) -> list[str]:
    """Issue 23's goals against this run, what changed (in the order it paid), and what is left."""
    p, c, pr, cb, wh = (by_key.get(k) for k in ("pipeline", "cost", "producer", "callbacks", "webhooks"))
    rows = []
    if p and p.data:
        by_shape, before = p.data.get("by_shape") or {}, p.data.get("before") or {}
        for name, d in by_shape.items():
            x = d.get(0.1) or {}
            if x.get("vs_naive") is not None:
                rows.append((f"pipeline vs the naive peer at 100 ms, {name}", "≥ 1.0×",
                             f"{_f(x['vs_naive'], '.2f')}× ({_f(x['pipeline'])} vs {_f(x['naive'])} jobs/s)",
                             _met(x["vs_naive"], 1.0)))
        d0 = p.data.get(0.0) or {}
        if d0.get("ratio") is not None:
            rows.append((f"pipeline vs the bare client at 0 ms, {_shape(p)}", "≥ 0.75",
                         f"{_f(d0['ratio'], '.2f')} ({_f(d0.get('pipeline'))} vs {_f(d0.get('bare'))})",
                         _met(d0["ratio"], 0.75)))
        for latency in (0.1, 0.0):
            b, d = before.get(latency), p.data.get(latency) or {}
            if b and d.get("pipe_cpu"):
                rows.append((f"workers' CPU per job at {latency * 1000:.0f} ms, {_shape(p)}", "before → after",
                             f"{_f(b['cpu'].get('worker'), '.2f')} → {_f(d['pipe_cpu'].get('worker'), '.2f')} ms "
                             f"(naive peer {_f((d.get('naive_cpu') or {}).get('worker'), '.2f')} ms); "
                             f"{_f(b['rate'])} → {_f(d.get('pipeline'))} jobs/s", "–"))
    if c and c.data:
        rows.append(("Redis round trips per job (enqueue + submit + callback)", "≤ 10",
                     _f(c.data["trips_per_job"], ".1f"), "met" if c.data["trips_per_job"] <= 10 else "not met"))
    if cb and cb.data:
        for shape, v in cb.data.items():
            rows.append((f"callbacks ingested at 200 connections (gunicorn {shape}), none lost", "≥ 2,500 req/s",
                         f"{_f(v['rps'])} req/s, lost {v['lost']}",
                         _met(v["rps"], 2500) if not v["lost"] else "not met"))
    if wh and wh.data and wh.data.get("cpu_ms_per_event_own"):
        e = wh.data["cpu_ms_per_event_own"]
        rows.append(("webhooks: dispatcher + delivery + Redis, CPU per job (one event)", "≤ 0.3 ms",
                     f"{_f(e['our_side'], '.2f')} ms (receiver apart: {_f(e['receiver'], '.2f')} ms)",
                     "met" if e["our_side"] <= 0.3 else "not met"))
    if pr and pr.data:
        rows.append(("batch enqueue, `enqueue_checkouts`", "≥ 5,000 jobs/s",
                     f"{_f(pr.data['batch'])} jobs/s (HTTP batch {_f(pr.data.get('http_batch'))}/s)",
                     _met(pr.data["batch"], 5000)))
    if not rows:
        return []
    out = ["## Issue 23: every safety feature on, against a naive Celery worker", "",
           "Measured in this run, task events, metrics and heartbeats on (table 1's notes). "
           "\"Before\" is the pipeline as it was when the issue began, run from a snapshot in the same "
           "rounds.", "", "| goal | target | this run | |", "|---|---|---|---|"]
    out += [f"| {a} | {t} | {v} | {m} |" for a, t, v, m in rows]
    out += ["", *ISSUE23_NOTES, ""]
    return out


# What issue 23 changed, in the order it paid (each measured side by side while it was made), and
# what the profile shows is left where a goal is not met.
ISSUE23_NOTES = [
    "What changed, in the order it paid:",
    "",
    "1. **Gateway requests on our own HTTP/1.1 client** (`worker/gateway/http1.py`, which the "
    "webhook POST already used): the request is one buffer, the answer's head split by hand; "
    "urllib3's pool and `http.client`'s header parsing through `email.feedparser` were the largest "
    "cost left per job. Workers' CPU per job 2.95–3.45 → 2.50–2.77 ms (quick runs side by side).",
    "2. **The broker's take step** (`worker/runtime/broker.py`, `broker_take.lua`): a message is "
    "taken and registered as unacknowledged in one Lua step, and the acknowledgements made "
    "meanwhile ride on the next take: two round trips a message fewer (four a job); and an "
    "acknowledgement that frees a full prefetch window wakes the consumer's loop, which had slept "
    "until its next 0.1 s timer with a third of the threads idle at 100 ms (threads busy 20.5 → "
    "28–29 of 32).",
    "3. **One round trip per enqueue and per callback**: the create script pushes the job's first "
    "task message, built by hand exactly as Celery would (`worker/runtime/messages.py`, tested "
    "field by field against `send_task`); the callback endpoint checks and pushes in one step.",
    "4. **The claim counts the first request** (one round trip less per submit), **Celery's two "
    "lines per task off** (`VEXORA_LOG_TASKS` brings them back) and the claim's line at DEBUG, our "
    "log lines built without structlog's chain (60 → 32 µs), **fewer garbage collections** "
    "(`gc.freeze` once set up, young threshold 20,000: ~5%), task messages from a template "
    "(22 → 15 µs).",
    "",
    "What is left where a goal is not met (py-spy, table 7): **at 100 ms** the pipeline's worker "
    "processes use less CPU per job than the peer's, but a job makes two blocking round trips the "
    "peer does not (the claim and the record, both needed: the lease and the counted attempt "
    "before the send, the outcome before the acknowledgement), and each wakes a thread that must "
    "wait for the GIL again; that, not CPU, is the remaining few per cent, and the rounds' own "
    "ratios spread about as wide (table 1; 0.95–1.00 a round in the runs of this issue). **At 0 ms** "
    "the 2 cores are the limit: the sandbox, Redis and the workers together spend about 3.3 ms of "
    "CPU per job against the bare client's 1.8 ms per request, and 0.75 would need the workers "
    "under ~1.5 ms, half of what the naive peer's Celery task alone costs; this run's 0.73 (the "
    "quick runs of this issue gave 0.73–0.81, the bare client moving between 700 and 800 req/s) "
    "is already 1.25× the peer. **Callbacks**: gunicorn's own per-request work (parsing, its "
    "thread hand-off, the response) is about a third of the web app's CPU per callback, the one "
    "Redis step about a fifth; the whole path costs about 0.8 ms of CPU per callback with the load "
    "generator, which on 2 cores is ~2,400 a second at best. **Webhooks**: what is left is the "
    "POST's own system calls, Celery's per-task work for the deliver task, and the record's "
    "serialization for the event body.",
]


def _replication(d: dict) -> str:
    from bench.replication import NO_WAIT, PLAIN, WAIT
    a, b, c = d[PLAIN], d[WAIT], d[NO_WAIT]
    m = d["micro"]
    rounds = ", ".join(_f(r, ".2f") for r in b["rounds"])
    return (
        f"**Acknowledged means replicated: the pipeline keeps {_f(b['ratio'], '.2f')} of the bare client "
        f"with one replica and a WAIT on every counted gateway request** (table 10, rounds {rounds}), "
        f"against {_f(a['ratio'], '.2f')} with one Redis and {_f(c['ratio'], '.2f')} through the same "
        f"Sentinel group without the WAIT, side by side in one run. The worker's `count_attempt` "
        f"(one round trip either way) takes {_f(m[WAIT]['count_attempt_us'])} µs with the WAIT against "
        f"{_f(m[NO_WAIT]['count_attempt_us'])} µs without and {_f(m[PLAIN]['count_attempt_us'])} µs on one "
        f"Redis, one call at a time on an otherwise idle Redis: the master answers only once the replica "
        f"has acknowledged the write, and a thread holds its job meanwhile, longer when the replica waits "
        f"for a core on a busy machine; "
        f"workers' CPU per job {_f(b['workers_ms'], '.2f')} ms with WAIT, {_f(c['workers_ms'], '.2f')} without, "
        f"{_f(a['workers_ms'], '.2f')} on one Redis; Redis, the replica and the Sentinels "
        f"{_f(b['redis_ms'], '.2f')} / {_f(c['redis_ms'], '.2f')} / {_f(a['redis_ms'], '.2f')} ms. The producer "
        f"pays it on every `enqueue_checkout`: {_f(m[WAIT]['enqueue_one'])} calls/s one at a time with "
        f"WAIT, {_f(m[NO_WAIT]['enqueue_one'])} without, {_f(m[PLAIN]['enqueue_one'])} on one Redis "
        f"({_f(m[WAIT]['enqueue_threads'])} / {_f(m[NO_WAIT]['enqueue_threads'])} / "
        f"{_f(m[PLAIN]['enqueue_threads'])} from 8 threads)."
        + (" **Below the 0.85 goal in this run.**" if b["ratio"] < 0.85 else ""))


# Issue 15 touched the per-job path (key-value log events in checkout, callbacks and the Celery
# app's logging set-up): table 1 in quick mode, the commit before the session (09f072d) and after
# it, alternating in one sitting, other processes using ~0.6 of the 2 CPUs throughout.
SESSION_CHECK = [
    "", "### Per-job path after issue 15 (logs, settings, typed record), side by side", "",
    "`python -m bench.run --quick --only pipeline`, 100 ms, 2 × threads -c 16, alternating the two trees "
    "in one sitting (other processes used about 0.6 of the 2 CPUs): before (09f072d) **0.75, 0.77**; "
    "after **0.84, 0.72** (and 0.83 in a run just before). No difference shows above this machine's "
    "noise; neither side reached 0.85 while the machine was this busy (table 1 above, from a full run "
    "before the issue-15 merge, gave 0.91).",
] + [
    # Issue 19 (one layer per folder): the same quick table, before and after the move.
    '',
    '### Per-job path after the layer layout (issue 19), side by side',
    '',
    "The move to one layer per folder changed what runs per job only in form: the Lua scripts are read from `worker/store/lua/*.lua` once per process and run by `EVALSHA` as before; the move script takes its 17 arguments by name (`scripts.argv`, a list built from a dict) and unpacks them into locals; the lease checks read Redis's clock through one shared `server_now_ms`; the `Settler` and `LeaseKeeper` are built once by the wiring instead of by each use case. `python -m bench.run --quick --only pipeline --no-write` (400 jobs a round), alternating the tree before the move (`ddf3bd0`) and after it, three times each, 2026-12-07 19:32 UTC; other processes used 0.50–0.60 of the 2 CPUs in every run:",
    '',
    '| run | tree | ratio at 100 ms, shipped shape (2 × threads -c 16) | jobs/s vs bare req/s | ratio at 0 ms | workers CPU ms per job, 100 ms / 0 ms |',
    '|---|---|---|---|---|---|',
    '| 1 | after | 0.86 | 245 vs 285 | 0.48 | 4.22 / 3.50 |',
    '| 1 | before | 0.85 | 244 vs 286 | 0.48 | 4.07 / 3.52 |',
    '| 2 | after | 0.87 | 253 vs 290 | 0.49 | 3.83 / 3.30 |',
    '| 2 | before | 0.87 | 252 vs 289 | 0.47 | 3.85 / 3.48 |',
    '| 3 | after | 0.85 | 247 vs 289 | 0.50 | 4.15 / 3.55 |',
    '| 3 | before | 0.87 | 253 vs 289 | 0.51 | 4.05 / 3.32 |',
    '',
    'No difference above the noise (means: 0.86 after, 0.86 before at 100 ms; 4.07 vs 3.99 ms of worker CPU per job); ≥ 0.85 after in every run.',
    '',
    "A second sitting on the final tree (the metrics counters flushed through the store as well), 2026-12-07 20:45 UTC, other processes 0.46–0.55 of the 2 CPUs, ratio at 100 ms in run order: after 0.85, before 0.88, after 0.82, before 0.83, after 0.88, before 0.84, after 0.89, before 0.85, after 0.88 (means: after 0.86, before 0.85; workers' CPU per job at 100 ms 3.42–4.03 ms after, 3.42–4.20 ms before). Single quick runs swing by ±0.04 on this shared machine; one of nine after-runs fell to 0.82, as did before-runs to 0.83.",
] + ['',
    '### Per-job path after the second money review (issue 20), side by side',
    '', "What issue 20 added per job: a `version` increment inside the Lua steps that already ran (no round trip), uncapped `XADD`s (the trim moved to the dispatcher's pass), a resend that re-reads its job before settling, and on the callback path two checks on fields already parsed. `python -m bench.run --quick --only pipeline --no-write` (400 jobs a round), alternating the tree before the issue (`9e08924`) and after it, twice each, 2026-12-07 21:58 UTC; other processes used 0.47–0.54 of the 2 CPUs:", '',
    '| run | tree | ratio at 100 ms, shipped shape (2 × threads -c 16) | jobs/s vs bare req/s | ratio at 0 ms | workers CPU ms per job, 100 ms / 0 ms |',
    '|---|---|---|---|---|---|',
    '| 1 | before | 0.90 | 267 vs 298 | 0.44 | 3.28 / 2.85 |',
    '| 1 | after | 0.88 | 261 vs 298 | 0.42 | 3.30 / 2.98 |',
    '| 2 | before | 0.88 | 263 vs 297 | 0.43 | 3.17 / 2.88 |',
    '| 2 | after | 0.89 | 265 vs 298 | 0.33 | 3.33 / 3.45 |',
    '', "At 100 ms no difference above the noise (means 0.885 after, 0.89 before); ≥ 0.85 in every run. The workers' CPU per job is about 3 % higher at 100 ms (3.32 vs 3.23 ms); the second after-run at 0 ms (0.33, 3.45 ms) is an outlier of this shared machine, the first (0.42) is within 0.02 of before."] + [
    '',
    '### Per-job path after accounts and access (issue 21), side by side',
    '',
    "What issue 21 added per job: the claim returns the job's account with its payload (inside the move script, no round trip), the gateway request is signed with that account's secret, the move scripts count per-account metrics fields, and a callback reads its job's account (one `HMGET`) to pick the secret. `python -m bench.run --quick --only pipeline --no-write` (400 jobs a round), alternating the tree before the issue (`116e969`) and after it, twice each, 2026-12-07 22:12 UTC; other processes used 0.51–0.55 of the 2 CPUs:",
    '',
    '| run | tree | ratio at 100 ms, shipped shape (2 × threads -c 16) | jobs/s vs bare req/s | ratio at 0 ms | workers CPU ms per job, 100 ms / 0 ms |',
    '|---|---|---|---|---|---|',
    '| 1 | before | 0.90 | 270 vs 298 | 0.49 | 3.32 / 2.95 |',
    '| 1 | after | 0.91 | 274 vs 300 | 0.44 | 3.10 / 2.97 |',
    '| 2 | before | 0.90 | 267 vs 298 | 0.44 | 3.23 / 3.05 |',
    '| 2 | after | 0.88 | 264 vs 300 | 0.41 | 3.20 / 3.28 |',
    '',
    "No difference above the noise at 100 ms (means 0.895 after, 0.90 before; workers' CPU per job 3.15 vs 3.28 ms); ≥ 0.85 in every run.",
] + [
    '',
    '### Per-job path after the console (issue 22), side by side',
    '',
    "What issue 22 added per job, inside the create and move scripts that already ran (no round trip): the job in the created-at and tradeNo indexes (and the trim of what outlived the TTL, at most 50 a create), its gateway id in the search index, and the JST day's per-account totals. `python -m bench.run --quick --only pipeline --no-write` (400 jobs a round), alternating the tree before the issue (main at `51403e7`) and after it, twice each, 2026-12-07 22:58 UTC; other processes used 0.51–0.57 of the 2 CPUs:",
    '',
    '| run | tree | ratio at 100 ms, shipped shape (2 × threads -c 16) | jobs/s vs bare req/s | ratio at 0 ms | workers / Redis CPU ms per job at 100 ms |',
    '|---|---|---|---|---|---|',
    '| 1 | before | 0.87 | 253 vs 290 | 0.43 | 4.05 / 0.45 |',
    '| 1 | after | 0.86 | 255 vs 296 | 0.42 | 3.78 / 0.42 |',
    '| 2 | before | 0.89 | 258 vs 290 | 0.44 | 3.72 / 0.45 |',
    '| 2 | after | 0.90 | 267 vs 296 | 0.43 | 3.62 / 0.42 |',
    '',
    "No difference above the noise (means 0.88 after, 0.88 before at 100 ms); Redis's CPU per job did not grow measurably (0.42 vs 0.45 ms); ≥ 0.85 in every run.",
]

# Where the round of issues 10-13 (settlement, takeover, metrics and review, webhooks) started: the
# full run that ended issue 6 (code digest 233a1b3cff7f, 2026-11-28).
ROUND_BEFORE = {"ratio100": 0.88, "jobs100": 263, "bare100": 298, "ratio0": 0.59, "cpu100": 4.45,
                "trips": 16.4, "rt_submit": 3, "bytes": 1708, "rss": 71.1}
# Table 1 in the other runs of that round, each side by side with the bare client (median of rounds):
ROUND_OTHER_RUNS = "0.85, 0.91, 0.87 (full runs); 0.845 (pipeline only); 0.95 (`--quick`, one round)"


def _this_round(p, c) -> list[str]:
    pd = p.data if p else {}
    d100, d0 = pd.get(0.1, {}), pd.get(0.0, {})
    cd = c.data if c else {}
    b = ROUND_BEFORE
    rows = [
        ("pipeline ratio at 100 ms, shipped shape", f"{b['ratio100']:.2f} ({b['jobs100']} jobs/s vs {b['bare100']} req/s)",
         f"{_f(d100.get('ratio'), '.2f')} ({_f(d100.get('pipeline'))} jobs/s vs {_f(d100.get('bare'))} req/s)"),
        ("pipeline ratio at 0 ms, shipped shape", f"{b['ratio0']:.2f}", _f(d0.get("ratio"), ".2f")),
        ("worker CPU per job at 100 ms", f"{b['cpu100']:.2f} ms",
         f"{_f((d100.get('pipe_cpu') or {}).get('worker'), '.2f')} ms"),
        ("Redis round trips per job (all phases) / per submit (ours)", f"{b['trips']} / {b['rt_submit']}",
         f"{_f(cd.get('trips_per_job'), '.1f')} / {_f(cd.get('rt_submit'))}"),
        ("bytes kept per finished job", f"{b['bytes']:,}",
         _f((cd.get('job_bytes') or 0) + (cd.get('stream_bytes') or 0), ',.0f')),
    ]
    out = ["", "## This round: issues 10–13", "",
           "Before: the full run that ended the previous round (issue 6). After: this run. The round "
           "added the settlement rules (no extra round trip: the create answer is judged on the job "
           "the submit already holds), the renewable lease (the token-checked attempt count replaces "
           "a two-command pipeline; the heartbeat is one round trip per process every 5 s), the "
           "metrics (counted inside the move script, or in memory and flushed every 5 s) and the "
           "webhook outbox (written by the move script only when an endpoint exists; table 9). The "
           "bytes per job grew by the entry-time index and the flags' fields. Table 1 moved between "
           f"runs of this round more than any of these costs: {ROUND_OTHER_RUNS}; read this run's "
           "figure with the other processes' share in the header.", "",
           "| | before | after |", "|---|---|---|"]
    out += [f"| {name} | {before} | {after} |" for name, before, after in rows]
    return out


def _before_after(p, c, cbk, one_cpu100) -> list[str]:
    pd = p.data if p else {}
    d100, d0 = pd.get(0.1, {}), pd.get(0.0, {})
    one = _single(p) if p else None
    cd = c.data if c else {}
    b = BEFORE
    rows = [
        ("pipeline ratio at 100 ms, shipped shape", f"{b['ratio100']:.2f} ({b['jobs100']} jobs/s vs {b['bare100']} req/s; 1 × -c 32)",
         f"{_f(d100.get('ratio'), '.2f')} ({_f(d100.get('pipeline'))} jobs/s vs {_f(d100.get('bare'))} req/s; {_shape(p) if p else '?'})"),
        ("pipeline ratio at 100 ms, one process × -c 32", f"{b['ratio100']:.2f}",
         f"{_f(one[0.1]['ratio'], '.2f')} ({_f(one[0.1]['pipeline'])} jobs/s)" if one else "–"),
        ("pipeline ratio at 0 ms, shipped shape", f"{b['ratio0']:.2f} ({b['jobs0']} vs {b['bare0']})",
         f"{_f(d0.get('ratio'), '.2f')} ({_f(d0.get('pipeline'))} vs {_f(d0.get('bare'))})"),
        ("worker CPU per job at 100 ms", f"{b['cpu100']:.2f} ms",
         f"{_f((d100.get('pipe_cpu') or {}).get('worker'), '.2f')} ms (one process: {_f(one_cpu100, '.2f')} ms)"),
        ("Redis round trips per job (all phases) / per submit (ours)", f"{b['trips']} / {b['rt_submit']}",
         f"{_f(cd.get('trips_per_job'), '.1f')} / {_f(cd.get('rt_submit'))}"),
        ("bytes kept per finished job", f"{b['bytes']:,}", _f((cd.get('job_bytes') or 0) + (cd.get('stream_bytes') or 0), ',.0f')),
        ("worker RSS idle, threads -c 64", f"{b['rss']} MiB", f"{_f(cd.get('rss_idle'), '.1f')} MiB"),
    ]
    out = ["## Before / after", "",
           "Before: the full run this round of work started from (code digest `ee2402e06e5b`, "
           "one worker process with 32 threads was then the benchmark's shape). After: this run. "
           "What changed, in the order it paid (each measured with py-spy on a worker at 100 ms):",
           "",
           "1. **One Redis client per broker connection pool** (`worker/runtime/broker.py`), with hiredis "
           "parsing Redis replies. kombu built a new `redis.Redis` for every publish, "
           "acknowledgement and unacked-index write; with redis-py 8 each costs ~140 µs of CPU (it "
           "rebuilds its response-callback table). Worker CPU per job 6.9 → 5.5 ms, 138 → 172 "
           "jobs/s (one process × 32 threads at 100 ms, py-spy runs of 3000 jobs).",
           "2. **Task events in batches** (`worker/runtime/consumer.py`): Celery asked its event loop to "
           "publish after nearly every event; now the buffer goes out at most every 0.1 s (and at "
           "Celery's 24-event limit). Events stay on for Flower. **3. The claim returns the "
           "payload** (`worker/store/jobs.py`, `worker/flows/submit.py`): the submit's HGETALL is gone "
           "(4 → 3 round trips); the payer-IP hash is stored with the attempt count; an invalid "
           "job now goes queued → submitting → rejected. 2 and 3 measured together: 5.5 → 4.6 ms, "
           "172 → 203 jobs/s.",
           "4. **urllib3 for the gateway** (`worker/gateway/client.py`): requests' per-request work "
           "(settings merge, cookies, hooks, preparation) cost ~0.3 ms of CPU per request in a "
           "sequential micro-benchmark; urllib3 is the pool requests runs on, shared by a worker's "
           "threads; no redirects followed. 4.6 → 4.5 ms, 203 → 206 jobs/s (within noise; its "
           "share of py-spy samples fell from 25% to 20%).",
           "5. **One worker process per core** as the measured and shipped shape (docker-compose "
           "already ran 2 replicas × 16): the largest step, see the first two rows below.",
           "6. **The payload in a key of its own** (`worker/store/jobs.py`): the job hash stays a "
           "listpack (see 4 above).",
           "",
           "| | before | after |", "|---|---|---|"]
    out += [f"| {a} | {bb} | {cc} |" for a, bb, cc in rows]
    out.append("")
    return out

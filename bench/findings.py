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
        d100, d0 = p.data.get(0.1, {}), p.data.get(0.0, {})
        lines.append(f"Pipeline efficiency (1 worker, threads -c 32, vs bare requests client, same concurrency): "
                     f"**{_f(d100.get('ratio'), '.2f')} at 100 ms** (goal ≥ 0.85: "
                     f"{'met' if (d100.get('ratio') or 0) >= 0.85 else 'not met'}; "
                     f"{_f(d100.get('pipeline'))} jobs/s vs "
                     f"{_f(d100.get('bare'))} req/s), **{_f(d0.get('ratio'), '.2f')} at 0 ms** "
                     f"({_f(d0.get('pipeline'))} vs {_f(d0.get('bare'))}).")
    s = by_key.get("scaleout")
    if s and s.data:
        one = s.data[min(s.data)]["jobs_per_s"]
        parts = [f"{n} → {_f(v['jobs_per_s'])} jobs/s ({_f(v['jobs_per_s'] / (n * one), '.2f')} of linear)"
                 for n, v in sorted(s.data.items())]
        lines.append("Scale-out at 100 ms (2 cores): " + "; ".join(parts) + ".")
    pr = by_key.get("producer")
    if pr and pr.data:
        lines.append(f"Producer: {_f(pr.data['one'])} `enqueue_checkout`/s one at a time, "
                     f"{_f(pr.data['concurrent'])}/s from 8 threads; a pipelined batch would reach "
                     f"~{_f(pr.data['batch_estimate'])}/s (estimate).")
    cb = by_key.get("callbacks")
    if cb and cb.data:
        for shape, v in cb.data.items():
            lines.append(f"Callbacks (gunicorn gthread {shape}, 200 connections): **{_f(v['rps'])} req/s**, "
                         f"p50 {_f(v['p50'])} ms / p99 {_f(v['p99'])} ms; applied at {_f(v['apply'])} jobs/s "
                         f"by one worker; lost: {v['lost']}.")
    c = by_key.get("cost")
    if c and c.data:
        d = c.data
        lines.append(f"Cost per job (enqueue + submit + callback): **{_f(d['trips_per_job'], '.1f')} Redis round "
                     f"trips** ({_f(d['client_per_job'], '.1f')} commands sent, {_f(d['commands_per_job'], '.0f')} "
                     f"counting those inside Lua); our code's share: {_f(d['rt_enqueue'])} + {_f(d['rt_submit'])} + "
                     f"{_f(d['rt_callback'])} round trips; {_f(d['job_bytes'] + d['stream_bytes'], ',.0f')} bytes kept "
                     f"per finished job.")
        lines.append(f"Worker RSS (threads -c {d['rss_c']}): {_f(d['rss_idle'])} MiB idle, "
                     f"{_f(d['rss_load'])} MiB peak under load.")
    po = by_key.get("pools")
    if po and po.data:
        parts = [f"{k} {_f(v['jobs_per_s'])} jobs/s / {_f(v['pss'])} MiB PSS" for k, v in po.data.items()]
        lines.append("Pools at 100 ms: " + "; ".join(parts) + ".")
    return lines


def findings(by_key: dict) -> str:
    p = by_key.get("pipeline")
    c = by_key.get("cost")
    pr = by_key.get("producer")
    po = by_key.get("pools")
    s = by_key.get("scaleout")
    prof = by_key.get("profile")
    pd = p.data if p else {}
    d100, d0 = pd.get(0.1, {}), pd.get(0.0, {})
    cpu_worker = (d0.get("pipe_cpu") or {}).get("worker")
    cpu_worker100 = (d100.get("pipe_cpu") or {}).get("worker")
    bare_client_cpu = (d0.get("bare_cpu") or {}).get("bench (client/poll)")
    ceiling = 1000 / cpu_worker if cpu_worker else None
    busy = d100.get("in_flight")
    loads = [getattr(sec, "others", 0.0) for sec in by_key.values()]
    others = sum(loads) / len(loads) if loads else None
    target = 0.85 * d100["bare"] if d100.get("bare") else None
    budget = 1000 / target if target else None
    cd = c.data if c else {}
    out = ["## What the numbers point at", "",
           "_Ranked suggestions, each with its evidence. The argument was written against these "
           "benchmarks' results; the figures in it are filled in from the run that wrote this file "
           "(`bench/findings.py`), so after a change re-run and check the argument still holds._", ""]
    out.append(
        "The one fact behind most of what follows: **a worker process is CPU-bound, not "
        "latency-bound.** It spends "
        f"{_f(cpu_worker, '.1f')} ms of CPU per job at 0 ms and {_f(cpu_worker100, '.1f')} ms at 100 ms "
        "(table 1, \"Where the CPU goes\"), and one CPython process runs Python on one core at a "
        f"time (the GIL), so one worker tops out near {_f(ceiling)} jobs/s however many threads it has. "
        f"At 100 ms with 32 threads it would need 320 jobs/s to keep them busy; only "
        f"{_f(busy, '.1f')} of 32 threads were inside a task on average — the rest waited for the "
        "consumer thread to hand them a message, and that thread shares the same GIL. The bare "
        f"client pays {_f(bare_client_cpu, '.1f')} ms of CPU per request for the same HTTP call, so "
        "everything around the HTTP call costs the worker about "
        f"{_f((cpu_worker or 0) - (bare_client_cpu or 0), '.1f')} ms per job. The ratio at 100 ms "
        "therefore moves with how much CPU the machine leaves the worker (other processes took "
        f"{_f(others, '.1f')} of the 2 CPUs on average during this run, see each section's last "
        "note); to reach "
        f"0.85 × {_f(d100.get('bare'))} = {_f(target)} jobs/s at 100 ms with c = 32, one worker "
        f"must get its jobs done in {_f(budget, '.1f')} ms of CPU each even with a whole core to "
        "itself, or the work must be spread over more processes. The suggestions are ranked by "
        "how much of that CPU (or of Redis) they free, with the evidence for each.")
    out.append("")
    items = []
    # 1. HTTP client
    client_rows = {}
    if prof:
        for t in prof.tables:
            if t.title.startswith("The HTTP client"):
                client_rows = {r[0]: r[1] for r in t.rows}
    trust = next((v for k, v in client_rows.items() if "trust_env = False" in k), None)
    default = next((v for k, v in client_rows.items() if "trust_env on" in k), None)
    post_share = _spy_share(prof, lambda p: "Session.post" in p)
    saving = (default - trust) / 1000 / cpu_worker if (default and trust and cpu_worker) else None
    floor_saving = default / 1000 / cpu_worker if (default and cpu_worker) else None
    items.append(
        f"**Make the gateway HTTP call cheaper ({_pct(saving)} of a worker's CPU for one line, up to "
        f"{_pct(floor_saving)} without requests).** py-spy puts `requests.Session.post` under "
        f"`GatewayClient._post` at the top of the worker's Python CPU ({_pct(post_share)} of its "
        "samples, table 7). Measured per request against the same sandbox (table 7, \"The HTTP "
        f"client's own cost\"): requests as `GatewayClient` uses it costs {_f(default)} µs of CPU more "
        f"than urllib3 directly, and {_f(trust)} µs more with `session.trust_env = False` — that one "
        "line in `GatewayClient._session` stops requests from looking up proxy variables and "
        "`~/.netrc` on every request (pass `proxies` explicitly from settings if a proxy is ever "
        "needed). A `urllib3.PoolManager` per client saves the rest; the error classification in "
        "`_post` maps onto urllib3's exceptions one to one.")
    # 2. Celery overhead
    role_rows = {}
    if prof:
        for t in prof.tables:
            if t.title.startswith("py-spy: the worker's samples"):
                role_rows = {r[0]: r[4] for r in t.rows}
    main = next((v for k, v in role_rows.items() if k.startswith("main thread")), "?")
    wrap = next((v for k, v in role_rows.items() if "Celery around" in k), "?")
    sub_client = cd.get("sub_client", {})
    items.append(
        "**Run one worker process per core, and trim Celery's per-message work (about half of "
        f"a worker's CPU).** py-spy: the consumer (main) thread takes {main} of the worker's Python "
        f"CPU and Celery's wrapper around each task another {wrap}; our task code is the rest. Per "
        f"job the broker side costs {_f(sub_client.get('brpop'), '.1f')} BRPOP, "
        f"{_f(sub_client.get('multi'), '.1f')} MULTI/EXEC pipelines (the `acks_late` unacked "
        f"bookkeeping) and {_f(sub_client.get('publish'), '.1f')} PUBLISH (task events for Flower) "
        f"in the submit phase alone (table 5). Since threads cannot use a second core, the cheapest "
        "throughput is more processes: scale-out (table 2) gives "
        + (", ".join(f"{n} worker{'s' if n > 1 else ''} {_f(v['jobs_per_s'])} jobs/s "
                     f"({_f(v['jobs_per_s'] / (n * s.data[min(s.data)]['jobs_per_s']), '.2f')} of linear)"
                     for n, v in sorted(s.data.items()))
           if s and s.data else "?")
        + " on 2 cores: close to linear while a core is free, flat once they are all taken. Ship `WORKER_CONCURRENCY` per "
        "process at 16–32 and scale replicas with cores rather than raising `-c`. Task events "
        "(`worker_send_task_events`) could be a setting, off where no Flower watches, and Celery's "
        "own per-task INFO lines (`Task … received/succeeded`) are a second log line per job next to "
        "our `state_change` lines.")
    # 3. Redis round trips in submit
    rt_cmds = cd.get("rt_submit_commands") or {}
    redis_share = _spy_share(prof, lambda p: p.startswith("Submitter.submit") and "[redis]" in p)
    items.append(
        f"**Fewer Redis round trips in `Submitter.submit`: {_f(cd.get('rt_submit'))} → 2.** Our code "
        "makes " + ", ".join(f"{k} ×{_f(v, '.0f')}" for k, v in rt_cmds.items())
        + " per submit (table 5, counted client-side): `load` (HGETALL), the claim (EVALSHA), "
        "`count_attempt` (HINCRBY) and the record (EVALSHA). The claim script already holds the "
        "hash: it can increment `attempts` (for the first send) and return the payload, which "
        "removes the HGETALL and the HINCRBY; a resend still counts its attempt separately. In "
        f"py-spy the redis-py calls of the submit are {_pct(redis_share)} of the worker's CPU (each "
        "round trip is command packing, a socket write, a read and a parse under the GIL), so "
        "halving them frees about half of that, plus two loopback latencies per job. "
        "`CallbackProcessor.apply` does "
        f"{_f(cd.get('rt_callback'))} (HGETALL, then EVALSHA): the amount check could move into "
        "the move script (pass the paid amount, compare in Lua) for 1.")
    # 4. bytes per job
    if cd:
        items.append(
            f"**Keep the job hash a listpack: {_f(cd.get('job_hash_bytes'), ',.0f')} → "
            f"{_f(cd.get('compact_bytes'), ',.0f')} bytes per job.** One field "
            f"({', '.join(cd.get('long_fields') or ['?'])}) is longer than Redis's "
            f"`{cd.get('value_key', 'hash-max-*-value')}` (64), which turns the whole 19-field hash "
            "into a hashtable; rewritten with the limit at 256 the same records take a third of the "
            "memory (table 5). Either set `hash-max-listpack-value 256` (Redis ≥ 7; "
            "`hash-max-ziplist-value` on 6) in the compose Redis, or keep `contact` under 64 bytes "
            "(e.g. only the masked mobile and e-mail, without JSON keys). With the history list "
            f"({_f(cd['job_bytes'] - cd['job_hash_bytes'], ',.0f')} bytes) a finished job keeps "
            f"{_f(cd['job_bytes'], ',.0f')} bytes for the 30-day TTL: a million jobs a day hold "
            f"~{_f(cd['job_bytes'] * 30e6 / 2**30, '.0f')} GiB, "
            f"~{_f((cd['job_bytes'] - cd['job_hash_bytes'] + cd['compact_bytes']) * 30e6 / 2**30, '.0f')} GiB "
            "as listpacks. (The events stream is capped at 100,000 entries, "
            f"~{_f(cd['stream_bytes'] / 4 * 100_000 / 2**20, '.0f')} MiB.)")
    # 5. sandbox Nagle
    nagle = {}
    if prof:
        for t in prof.tables:
            if t.title.startswith("One request at a time"):
                nagle = {r[0]: r[1] for r in t.rows}
    stock = next((v for k, v in nagle.items() if "stock" in k), None)
    fixed = next((v for k, v in nagle.items() if "nagle" in k), None)
    nagle_item = (
        f"**Set `disable_nagle_algorithm = True` on the sandbox's handler: {_f(stock, '.0f')} ms → "
        f"{_f(fixed, '.1f')} ms per request.** `SandboxHandler` writes the headers and the body of "
        "each answer in two sends; with Nagle on, the body waits for the client's delayed ACK "
        "(~40 ms on Linux). Every sandbox answer in the tests, the demo and CI pays that; these "
        "benchmarks run the sandbox through `bench/sandbox_server.py`, which only sets that flag, "
        "so that \"0 ms\" means 0 ms (`--stock-sandbox` measures the stock one). Production is "
        "not affected (the real gateway is another server).")
    if stock is not None and fixed is not None and stock < 10:
        # the stock handler already sets TCP_NODELAY: report it as done, below the ranked list
        nagle_item = None
        done_note = (
            f"Already applied: the sandbox's handler sets TCP_NODELAY (`disable_nagle_algorithm`), "
            f"so the stock sandbox answers a sequential checkout in {_f(stock, '.1f')} ms "
            f"(table 7); earlier runs of this bench measured ~44 ms there (Nagle holding the body "
            "for the client's delayed ACK). `bench/sandbox_server.py` still sets the flag itself, "
            "so runs against an older sandbox compare alike.")
    else:
        done_note = ""
    if nagle_item:
        items.append(nagle_item)
    # 6. producer
    if pr and pr.data:
        prod = {r[0].strip(): r for r in pr.tables[0].rows}
        send = next((r for k, r in prod.items() if k.startswith("part: Celery send_task")), None)
        create = next((r for k, r in prod.items() if k.startswith("part: store.create only")), None)
        items.append(
            f"**Producer: the broker send dominates `enqueue_checkout`.** Timed on their own, "
            f"`send_task` takes {_f(send[5] if send else None)} µs and the store's create "
            f"{_f(create[5] if create else None)} µs, of a "
            f"{_f(prod.get('enqueue_checkout, one at a time', [0] * 6)[5])} µs call. "
            f"A batch API that pipelines the creates (emulated in table 3) only reaches "
            f"~{_f(pr.data['batch_estimate'])}/s because one `send_task` per job remains; the gain "
            "is in sending the messages in bulk too — one pipeline of `LPUSH`es of ready-made "
            "messages (the format `docs/producers.md` documents) instead of kombu's per-message "
            f"publish. Eight producer threads gave {_f(pr.data['concurrent'])}/s against "
            f"{_f(pr.data['one'])}/s for one: threads do not help a producer either.")
    # callbacks
    cbk = by_key.get("callbacks")
    if cbk and cbk.data:
        shape, first = next(iter(cbk.data.items()))
        items.append(
            f"**Callbacks: the web app keeps up; applying them is the slow side.** gunicorn "
            f"{shape} took {_f(first['rps'])} callbacks/s at 200 connections (table 4) and none "
            f"was lost, but one worker applied {_f(first['apply'])}/s: the same Celery overhead as "
            f"a submit, around only {_f(cd.get('rt_callback'))} round trips of our own "
            f"({_f((cd.get('trips_phases') or [0, 0, 0])[2], '.1f')} in all per callback, table 5). "
            "A burst of callbacks queues up (safely: they are acknowledged late) and drains at "
            "the workers' pace; suggestions 2 and 3 apply to it unchanged.")
    # what not to change
    micro = {}
    if prof:
        for t in prof.tables:
            if t.title.startswith("Micro timings"):
                micro = {r[0]: r[1] for r in t.rows}

    def m(prefix):
        return next((v for k, v in micro.items() if k.startswith(prefix)), None)

    per_job = [m("CheckoutRequestSchema.load"), m("CheckoutResponseSchema.load"), m("build_retrying"),
               m("GatewayClient.signed"), m("ip_hash")]
    total_us = sum(per_job) if all(per_job) else None
    items.append(
        "**Not worth changing: schema and app construction.** Nothing is built per job: the "
        "checkout schema, the gateway's answer schemas and the callback schema are built once per "
        f"process (constructing `CheckoutRequestSchema` would cost {_f(m('CheckoutRequestSchema(...)'))} µs, "
        f"table 7); per job, `CheckoutRequestSchema.load` is {_f(per_job[0])} µs, the answer's schema "
        f"{_f(per_job[1])} µs, `build_retrying` {_f(per_job[2], '.1f')} µs, signing {_f(per_job[3])} µs, "
        f"`ip_hash` {_f(per_job[4], '.1f')} µs: {_f(total_us)} µs together, "
        f"{_pct(total_us / 1000 / cpu_worker if total_us and cpu_worker else None)} of a job's CPU. "
        "The Lua scripts' own work is cheap for Redis (Redis CPU per job in table 1 is a tenth of "
        "the worker's).")
    if po and po.data:
        g = po.data.get("gevent-32")
        t8, f8, t32 = po.data.get("threads-8"), po.data.get("prefork-8"), po.data.get("threads-32")
        items.append(
            "**Pool: stay with threads.** At the same -c 8, prefork matched threads "
            f"({_f(f8 and f8['jobs_per_s'])} vs {_f(t8 and t8['jobs_per_s'])} jobs/s) for "
            f"{_f(f8 and f8['pss'])} vs {_f(t8 and t8['pss'])} MiB PSS; threads -c 32 gave "
            f"{_f(t32 and t32['jobs_per_s'])} jobs/s in {_f(t32 and t32['pss'])} MiB. "
            + (f"gevent -c 32 gave {_f(g['jobs_per_s'])} jobs/s against threads' "
               f"{_f(t32 and t32['jobs_per_s'])} at the same -c, and varied most between runs; "
               "with the Redis transport its "
               "messages arrived in bursts of about -c every 1–2 s (seen by polling the unacked "
               "hash while a gevent worker drained: it filled and emptied in steps), so it is not "
               "a drop-in speed-up here." + _gevent_shortfall(po)
               if g else "gevent was not installed for this run."))
    for i, item in enumerate(items, 1):
        out.append(f"{i}. {item}")
    out.append("")
    if done_note:
        out.append(done_note)
        out.append("")
    return "\n".join(out)

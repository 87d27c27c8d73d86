"""``vexora-checkout demo``: the whole life of a batch of checkouts, on one machine.

Starts a private Redis (unless ``REDIS_URL`` is set), the sandbox gateway, a verifying webhook
receiver (the merchant's side, ``worker.sandbox.receiver``, with a fresh ``whsec_`` secret), the
web app, a checkout worker and a webhook worker, beat and — when installed — Flower; enqueues a
realistic batch (most paid, some failed, one partial, a few invalid, some hitting injected gateway
faults); a payer bot clicks the cashier buttons as payers would; live progress in the terminal; a
summary at the end, with the webhooks the receiver verified (waiting up to ``WEBHOOK_WAIT`` seconds
for each job's final one; they do not change the exit status yet). Every process it started is
stopped on exit, on Ctrl-C and on SIGTERM.

Two merchant accounts (README "Accounts"): ``default`` and ``shop-b``, each with its own merchant
number and secret (an accounts file in the demo's log directory; the secrets in the processes'
environment), the batch split between them, the sandbox knowing both merchants. For each account
the demo makes an API key and an operator (``/ops`` login) and prints them.

With ``--serve`` it writes an env file (``demo.env`` in its log directory, mode 0600; docs/first-hour.md)
that ``source`` turns into the demo's environment for any ``vexora-checkout`` command: Redis, the
sandbox as ``VEXORA_BASE_URL`` with ``VEXORA_ENV=sandbox``, the accounts file and the secret
variables it names, the notify and webhook settings (``VEXORA_WEBHOOK_ALLOW_PRIVATE``: the demo's
receivers are on loopback), and ``DEMO_*`` variables for the rest (an API key per account, the web,
/ops, sandbox and receiver URLs, an operator login). When stdout is not a terminal, lines holding
a command or a secret are printed whole, never wrapped.
"""

from __future__ import annotations

import base64
import os
import random
import secrets
import shlex
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import requests
from rich.console import Console
from rich.live import Live
from rich.table import Table

from worker.client import enqueue_checkout
from worker.config.settings import Settings
from worker.domain import states
from worker.local.redis_server import RedisServer, free_port
from worker.local.services import Services, http_ok
from worker.runtime.wiring import Runtime
from worker.waiting import TimedOut, wait_until
from worker.web.serve import web_argv

__all__ = ["run_demo", "Plan", "build_plan"]

WEBHOOK_WAIT = 30.0  # seconds after the batch for every job's final webhook to be verified
# the states whose every entry is a webhook (checkout.<state>); queued and submitting are not
WEBHOOK_STATES = frozenset({states.PAYING, states.SUCCEEDED, states.PARTIALLY_PAID, states.FAILED,
                            states.DECLINED, states.REJECTED, states.UNKNOWN})
NAMES = [("タロウ", "ヤマダ"), ("ハナコ", "スズキ"), ("ケンタ", "タナカ"), ("ユイ", "サトウ"), ("ソウタ", "コバヤシ")]


@dataclass
class Plan:
    """One job of the batch: its payload, what the payer does, what should come of it."""

    payload: dict
    expect: str
    action: str | None = None  # "pay", "partial", "fail": the payer's click
    fault: dict | None = None
    label: str = "paid"
    fields: dict = field(default_factory=dict)


def _payload(n: int, rng: random.Random, **overrides) -> dict:
    first, last = NAMES[n % len(NAMES)]
    job = {
        "tradeNo": f"DEMO{time.strftime('%H%M%S')}{n:03d}{uuid.uuid4().hex[:6]}",
        "userId": f"user-{n:03d}", "amount": str(rng.choice([300, 980, 1500, 3200, 12000])),
        "mobile": f"090{rng.randrange(10**8):08d}", "firstname": first, "lastname": last,
        "email": f"payer{n:03d}@example.jp", "channelCode": "EWALLET", "wayCode": "PAYPAY",
        "ipAddress": f"8.{rng.randrange(1, 255)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
        "returnUrl": "https://shop.example/thanks", "remark": f"demo order {n}",
    }
    job.update(overrides)
    return job


def build_plan(size: int = 50, seed: int | None = None) -> list[Plan]:
    """About ``size`` jobs: most paid, some failed, one partial, four invalid, seven with faults."""
    rng = random.Random(seed)
    invalid = [("bad mobile", {"mobile": "+81-90-1234"}), ("hiragana name", {"firstname": "たろう"}),
               ("private IP", {"ipAddress": "192.168.1.10"}), ("decimal amount", {"amount": "12.50"})]
    faults = [("502 then ok", {"kind": "http_error", "status": 502, "times": 1}),
              ("502 twice", {"kind": "http_error", "status": 502, "times": 2}),
              ("429 Retry-After", {"kind": "retry_after", "delay": 1, "times": 1}),
              ("connection dropped", {"kind": "drop", "create": False, "times": 1}),
              ("slow answer after create", {"kind": "slow_after_create", "delay": 3, "times": 1}),
              ("5000, order created", {"kind": "code_5000", "create": True, "times": 1}),
              ("5000, no order", {"kind": "code_5000", "create": False, "times": 1})]
    plans: list[Plan] = []
    for label, override in invalid:
        plans.append(Plan(_payload(len(plans), rng, **override), states.REJECTED, label=f"invalid: {label}"))
    plans.append(Plan(_payload(len(plans), rng), states.PARTIALLY_PAID, "partial", label="partial payment"))
    for _ in range(max(1, size // 10)):
        plans.append(Plan(_payload(len(plans), rng), states.FAILED, "fail", label="payer fails"))
    for label, fault in faults:
        plans.append(Plan(_payload(len(plans), rng), states.SUCCEEDED, "pay", fault, label=f"fault: {label}"))
    while len(plans) < size:
        plans.append(Plan(_payload(len(plans), rng), states.SUCCEEDED, "pay"))
    rng.shuffle(plans)
    return plans


class PayerBot:
    """Clicks a job's cashier button once its payment link exists, as the payer would."""

    def __init__(self, sandbox_url: str):
        self.sandbox_url = sandbox_url
        self.http = requests.Session()
        self.done: set[str] = set()

    def act(self, plan: Plan, record: dict) -> None:
        trade_no = plan.payload["tradeNo"]
        if plan.action is None or trade_no in self.done or record.get("state") != states.PAYING:
            return
        link = record.get("paymentLink") or (
            f"{self.sandbox_url}/cashier/{record['platFormTradeNo']}" if record.get("platFormTradeNo") else None)
        if not link:
            return
        self.done.add(trade_no)
        # the cashier form posts; the sandbox then sends the signed callback to our web app
        self.http.post(f"{link}/{plan.action}", allow_redirects=False, timeout=10)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _flower_installed() -> bool:
    import importlib.util
    return importlib.util.find_spec("flower") is not None


def _log_says(service, text: str):
    return lambda: text in service.log_path.read_text(errors="replace")


def _summary_table(counts: Counter, total: int, title: str) -> Table:
    table = Table(title=title)
    table.add_column("state")
    table.add_column("jobs", justify="right")
    for state in states.ALL:
        if counts.get(state):
            table.add_row(state, str(counts[state]))
    table.add_row("[bold]total", f"[bold]{total}")
    return table


def run_demo(*, size: int = 50, serve: bool = False, timeout: float = 180.0, seed: int | None = None,
             console: Console | None = None) -> int:
    """Run the demo; the exit status is 0 when every job ended as planned."""
    # not on a terminal (a pipe, a file, a test): no wrapping, so that each command is one whole line
    console = console or Console(soft_wrap=not sys.stdout.isatty())
    if os.environ.get("VEXORA_BASE_URL"):
        console.print("[red]The demo runs only against its own sandbox gateway: unset VEXORA_BASE_URL.")
        return 2
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    log_dir = Path(tempfile.mkdtemp(prefix="vexora-demo-"))
    with ExitStack() as cleanup:
        try:
            env, urls = _start_everything(cleanup, log_dir, console)
            settings = Settings.from_env(env)
            runtime = Runtime(settings)
            logins = _accounts_access(runtime, env)
            env_file = write_env_file(log_dir / "demo.env", env, urls, logins) if serve else None
            plans = build_plan(size, seed)
            ok = _run_batch(plans, runtime, urls, console, timeout)
            _print_where_next(console, urls, log_dir, plans, settings, serve)
            _print_logins(console, urls, logins, serve)
            if env_file:
                _print_env_file(console, env_file, urls, logins, plans)
            if serve:
                requests.post(urls["sandbox"] + "/_sandbox/autopay",
                              json={"mix": {"paid": 0.9, "failed": 0.1}, "delay": 30}, timeout=5)
                console.print("\n[bold]Serving[/bold] — enqueue more (the sandbox pays by itself after 30 s "
                              "unless you click first). Ctrl-C stops everything.")
                stop.wait()
            return 0 if ok else 1
        except KeyboardInterrupt:
            console.print("\n[yellow]Interrupted; stopping every process the demo started.")
            return 130
        finally:
            signal.signal(signal.SIGTERM, previous)


ACCOUNTS = ("default", "shop-b")  # the demo's merchant accounts
_ACCOUNTS_FILE = """# the demo's merchant accounts (README "Accounts"); the secrets are in the environment
[accounts.default]
merchant_no = "DEMO-MERCHANT"
app_secret_env = "DEMO_DEFAULT_APP_SECRET"

[accounts.shop-b]
merchant_no = "DEMO-MERCHANT-B"
app_secret_env = "DEMO_SHOP_B_APP_SECRET"
"""


def _start_everything(cleanup: ExitStack, log_dir: Path, console: Console):
    accounts_file = log_dir / "accounts.toml"
    accounts_file.write_text(_ACCOUNTS_FILE, encoding="utf-8")
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        server = RedisServer(data_dir=str(log_dir / "redis")).start()
        cleanup.callback(server.stop)
        redis_url = server.url
    ports = {name: free_port() for name in ("sandbox", "receiver", "web", "flower")}
    urls = {"redis": redis_url, "sandbox": f"http://127.0.0.1:{ports['sandbox']}",
            "receiver": f"http://127.0.0.1:{ports['receiver']}",
            "web": f"http://127.0.0.1:{ports['web']}", "flower": None,
            "api_token": secrets.token_urlsafe(16)}
    webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")
    env = {**os.environ, "REDIS_URL": redis_url, "VEXORA_BASE_URL": urls["sandbox"], "VEXORA_ENV": "sandbox",
           "VEXORA_ACCOUNTS_FILE": str(accounts_file), "VEXORA_MERCHANT_NO": "", "VEXORA_APP_SECRET": "",
           "VEXORA_APP_SECRET_FILE": "",
           "DEMO_DEFAULT_APP_SECRET": secrets.token_urlsafe(24), "DEMO_SHOP_B_APP_SECRET": secrets.token_urlsafe(24),
           "VEXORA_NOTIFY_URL": urls["web"] + "/vexora/notify", "VEXORA_API_TOKEN": urls["api_token"],
           "VEXORA_READ_TIMEOUT": "1.5", "VEXORA_RETRY_BASE_DELAY": "0.2", "VEXORA_RETRY_MAX_DELAY": "1",
           "VEXORA_RECONCILE_INTERVAL": "2", "VEXORA_RECONCILE_BACKOFF_BASE": "1",
           "VEXORA_PAYING_QUERY_AFTER": "30", "PYTHONUNBUFFERED": "1",
           # the workers sign with this secret, the receiver verifies with it: it is in the
           # environment of each, on no command line
           "VEXORA_WEBHOOK_URL": urls["receiver"] + "/webhooks", "VEXORA_WEBHOOK_SECRET": webhook_secret,
           "VEXORA_WEBHOOK_ALLOW_PRIVATE": "true",
           # a demo's receiver recovers in seconds, not the specification's minutes and hours
           "VEXORA_WEBHOOK_RETRY_SCHEDULE": os.environ.get("VEXORA_WEBHOOK_RETRY_SCHEDULE", "1,2,5,10")}
    Settings.from_env(env)  # the caller's other VEXORA_* variables come along: refuse bad ones before any start
    services = Services(env, log_dir)
    cleanup.callback(services.stop_all)
    with console.status("starting Redis, sandbox, webhook receiver, web, workers, beat…"):
        services.start("sandbox", "-m", "worker.cli", "sandbox", "--port", str(ports["sandbox"]),
                       "--time-factor", "0.05", ready=http_ok(urls["sandbox"] + "/_sandbox/stats"))
        services.start("receiver", "-m", "worker.sandbox.receiver", "--port", str(ports["receiver"]),
                       ready=http_ok(urls["receiver"] + "/_receiver/stats"))
        services.start("web", *web_argv("--bind", f"127.0.0.1:{ports['web']}"),
                       ready=http_ok(urls["web"] + "/healthz"))
        # the Procfile's shape: checkout workers, and a webhook worker of its own
        workers = [services.start(name, "-m", "celery", "-A", "worker", "worker", "-Q", queues,
                                  "--pool", "threads", "-c", threads, "-n", f"{name}@%h", "--loglevel", "INFO",
                                  "--without-gossip", "--without-mingle")
                   for name, queues, threads in (("demo", "checkout,callbacks,reconcile", "8"),
                                                 ("webhooks", "webhooks", "4"))]
        for worker in workers:
            worker.wait_ready(_log_says(worker, "ready."), timeout=60)
        beat = services.start("beat", "-m", "celery", "-A", "worker", "--quiet", "beat", "--loglevel", "INFO",
                              "--schedule", str(log_dir / "beat-schedule"))
        beat.wait_ready(_log_says(beat, "beat: Starting"), timeout=60)
        if _flower_installed():
            urls["flower_auth"] = f"demo:{secrets.token_urlsafe(9)}"
            # Flower reads FLOWER_BASIC_AUTH itself: the password is on no command line (`ps`)
            services.start("flower", "-m", "celery", "-A", "worker", "flower", "--address=127.0.0.1",
                           f"--port={ports['flower']}", env={"FLOWER_BASIC_AUTH": urls["flower_auth"]},
                           ready=lambda: _port_open(ports["flower"]))
            urls["flower"] = f"http://127.0.0.1:{ports['flower']}"
    console.print(f"[green]✓[/green] Redis {redis_url} · sandbox {urls['sandbox']} · webhook receiver "
                  f"{urls['receiver']} · web {urls['web']}"
                  + (f" · Flower {urls['flower']}" if urls["flower"] else " · (Flower not installed)"))
    return env, urls


def _run_batch(plans: list[Plan], runtime: Runtime, urls: dict, console: Console, timeout: float) -> bool:
    http = requests.Session()
    for plan in plans:
        if plan.fault:
            http.post(urls["sandbox"] + "/_sandbox/faults",
                      json={"faults": [{**plan.fault, "tradeNo": plan.payload["tradeNo"]}]}, timeout=5)
    bot = PayerBot(urls["sandbox"])
    started = time.monotonic()
    for n, plan in enumerate(plans):
        enqueue_checkout(plan.payload, account=ACCOUNTS[n % len(ACCOUNTS)], runtime=runtime)
    console.print(f"enqueued {len(plans)} checkouts, split between the accounts {' and '.join(ACCOUNTS)}")
    records: dict[str, dict] = {}
    with Live(console=console, refresh_per_second=4, transient=True) as live:
        def all_settled() -> bool:
            """One round: read every job, let the payer bot act on it, redraw the table."""
            settled = 0
            for plan in plans:
                trade_no = plan.payload["tradeNo"]
                record = runtime.store.get(trade_no) or {}
                records[trade_no] = record
                bot.act(plan, record)
                settled += record.get("state") == plan.expect
            counts = Counter(r.get("state", "?") for r in records.values())
            live.update(_summary_table(counts, len(plans),
                                       f"{settled}/{len(plans)} settled · {time.monotonic() - started:.0f}s"))
            return settled == len(plans)

        try:  # the batch's timeout counts from before its enqueueing
            wait_until(all_settled, timeout=max(0.0, started + timeout - time.monotonic()), interval=0.25,
                       what="every job to settle")
        except TimedOut:
            pass  # the summary shows which jobs did not end as planned
    elapsed = time.monotonic() - started
    with console.status(f"waiting for each job's final webhook at the receiver (up to {WEBHOOK_WAIT:.0f} s)…"):
        webhooks = _await_webhooks(urls["receiver"], plans, records, WEBHOOK_WAIT)
    _print_summary(console, plans, records, elapsed, urls["sandbox"], webhooks)
    return (all(records[p.payload["tradeNo"]].get("state") == p.expect for p in plans)
            and not _created_twice(urls["sandbox"], plans))


def _accounts_access(runtime: Runtime, env: dict) -> list[dict]:
    """Per account: the receiver's endpoint (the default one comes from VEXORA_WEBHOOK_URL), an
    API key with every scope on it and an operator who may query and resolve its jobs."""
    from worker.domain.access import SCOPES
    from worker.store.apikeys import ApiKeys
    from worker.store.operators import Operators
    endpoints = runtime.webhook_endpoints
    if not [e for e in endpoints.all(account="shop-b")]:
        endpoints.add(env["VEXORA_WEBHOOK_URL"], secret=env["VEXORA_WEBHOOK_SECRET"], account="shop-b")
    keys = ApiKeys(runtime.redis, runtime.store.keys)
    operators = Operators(runtime.redis, runtime.store.keys)
    logins = []
    for account in ACCOUNTS:
        _record, key = keys.create(f"demo key of {account}", account, SCOPES)
        name, password = f"{account}-operator", secrets.token_urlsafe(12)
        operators.add(name, password, "operator", account=account)
        logins.append({"account": account, "key": key, "operator": name, "password": password})
    return logins


# what the demo's processes were given that a CLI command needs too, besides every VEXORA_* variable
_ENV_FILE_OTHERS = ("REDIS_URL", "DEMO_DEFAULT_APP_SECRET", "DEMO_SHOP_B_APP_SECRET")


def env_file_values(env: dict, urls: dict, logins: list[dict]) -> dict[str, str]:
    """The env file's variables: the demo's own settings, then ``DEMO_*`` extras (no VEXORA_* name
    nothing reads: those would be warned about as typos)."""
    values = {k: v for k, v in env.items() if k in _ENV_FILE_OTHERS or
              (k.startswith("VEXORA_") and k != "VEXORA_DEMO_TEST_MARKER")}
    first = logins[0]
    values.update({"DEMO_WEB_URL": urls["web"], "DEMO_OPS_URL": urls["web"] + "/ops",
                   "DEMO_SANDBOX_URL": urls["sandbox"], "DEMO_RECEIVER_URL": urls["receiver"],
                   "DEMO_API_KEY": first["key"], "DEMO_OPERATOR": first["operator"],
                   "DEMO_OPERATOR_PASSWORD": first["password"]})
    for login in logins[1:]:
        suffix = login["account"].upper().replace("-", "_")
        values[f"DEMO_API_KEY_{suffix}"] = login["key"]
    if urls.get("flower"):
        values["DEMO_FLOWER_URL"] = urls["flower"]
    return values


def write_env_file(path: Path, env: dict, urls: dict, logins: list[dict]) -> Path:
    """``export VAR=value`` lines (shell-quoted), readable by its owner only (0600)."""
    lines = ["# vexora-checkout demo: `source` this file, then any vexora-checkout command works",
             "# against the running demo (docs/first-hour.md). It holds secrets: keep it to yourself."]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env_file_values(env, urls, logins).items()]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)  # whatever the umask
    return path


def _print_env_file(console: Console, path: Path, urls: dict, logins: list[dict], plans: list[Plan]) -> None:
    sample = next(p.payload["tradeNo"] for p in plans if p.expect == states.SUCCEEDED)
    first = logins[0]
    console.print("\n[bold]Your shell, pointed at the demo[/bold] (docs/first-hour.md)")
    console.print(f"  env file: {path}", soft_wrap=True)
    console.print(f"  /ops:     {urls['web']}/ops  (login name {first['operator']} password {first['password']})",
                  soft_wrap=True)
    for command in (f"source {shlex.quote(str(path))}",
                    f"vexora-checkout status {sample}",
                    "vexora-checkout review",
                    "vexora-checkout enqueue jobs.csv --wait",
                    "vexora-checkout sandbox trigger TRADENO paid   # or partial, rest, failed, overpaid, "
                    "unknown-status, lost-callback",
                    "vexora-checkout webhooks listen --forward-to http://127.0.0.1:4242/webhooks"):
        console.print(f"  $ {command}", soft_wrap=True, markup=False, highlight=False)


def _print_logins(console: Console, urls: dict, logins: list[dict], serve: bool) -> None:
    console.print("\n[bold]Accounts[/bold] (each sees only its own jobs; "
                  + ("while the demo serves" if serve else "valid while a demo runs: --serve keeps one up") + ")")
    for login in logins:
        console.print(f"  {login['account']}: API key {login['key']}", soft_wrap=True)
        console.print(f"  {' ' * len(login['account'])}  /ops login {urls['web']}/ops/login  "
                      f"name {login['operator']}  password {login['password']}", soft_wrap=True)


def _time_to_link(record: dict) -> float | None:
    for entry in record.get("history", []):
        if entry.get("to") == states.PAYING:
            return (entry["at"] - record["createdAt"]) / 1000
    return None


def _final_webhook(record: dict) -> str | None:
    """The webhook type a job's state is announced with, if that state has one."""
    state = record.get("state")
    return f"checkout.{state}" if state in WEBHOOK_STATES else None


def _await_webhooks(receiver_url: str, plans: list[Plan], records: dict, timeout: float) -> dict:
    """The receiver's stats and events once every job's final webhook is verified, or at the deadline.

    ``missing``: the tradeNos whose final state had no verified webhook by then (a job still in a
    state that has none, e.g. ``queued``, is not waited for).
    """
    http = requests.Session()
    wanted = {(p.payload["tradeNo"], kind) for p in plans
              if (kind := _final_webhook(records.get(p.payload["tradeNo"]) or {}))}
    seen: dict = {"stats": {}, "events": [], "missing": sorted(t for t, _ in wanted)}

    def arrived() -> bool:
        try:
            events = http.get(receiver_url + "/_receiver/events", timeout=5).json()
            stats = http.get(receiver_url + "/_receiver/stats", timeout=5).json()
        except (requests.RequestException, ValueError):
            return False  # the receiver is the demo's own: a miss here is only reported
        got = {(e.get("tradeNo"), e.get("type")) for e in events}
        seen.update(stats=stats, events=events, missing=sorted(t for t, k in wanted - got))
        return not seen["missing"]

    try:
        wait_until(arrived, timeout=timeout, interval=0.5, what="every job's final webhook")
    except TimedOut:
        pass  # reported by the summary; webhooks do not decide the demo's exit status (yet)
    return seen


def _webhook_lines(webhooks: dict, jobs: int) -> list[str]:
    """The summary's webhook line, and a note when something did not arrive or did not verify."""
    stats, events, missing = webhooks["stats"], webhooks["events"], webhooks["missing"]
    retried = sum(1 for e in events if (e.get("attempt") or 0) > 1)
    lines = [f"webhooks verified: {stats.get('verified', 0)}, retried: {retried} "
             f"(duplicates {stats.get('duplicates', 0)})"]
    if stats.get("rejected"):
        lines.append(f"[red]webhooks the receiver refused (signature not verified): {stats['rejected']}")
    if not events and not stats.get("rejected"):
        lines.append(f"[yellow]no webhook reached the receiver within {WEBHOOK_WAIT:.0f} s of the batch "
                     "(is the webhook sender, issue 12, in this build?); the exit status ignores webhooks")
    elif missing:
        shown = ", ".join(missing[:5]) + (", …" if len(missing) > 5 else "")
        lines.append(f"[yellow]{len(missing)} of {jobs} jobs had no verified webhook for their final state "
                     f"within {WEBHOOK_WAIT:.0f} s: {shown} (the exit status ignores webhooks)")
    return lines


def _print_summary(console: Console, plans: list[Plan], records: dict, elapsed: float,
                   sandbox_url: str, webhooks: dict) -> None:
    counts = Counter(r.get("state", "?") for r in records.values())
    console.print(_summary_table(counts, len(plans), f"{len(plans)} checkouts in {elapsed:.1f}s"))
    to_link = sorted(t for t in (_time_to_link(r) for r in records.values()) if t is not None)
    if to_link:
        p95 = to_link[min(len(to_link) - 1, int(round(0.95 * (len(to_link) - 1))))]
        console.print(f"time to payment link: p50 {statistics.median(to_link) * 1000:.0f} ms · "
                      f"p95 {p95 * 1000:.0f} ms ({len(to_link)} jobs)")
    retries = sum(max(0, int(r.get("attempts") or 0) - 1) for r in records.values())
    redriven = sum(any(h.get("detail", {}).get("reason", "").startswith("re-driven") for h in r.get("history", []))
                   for r in records.values())
    reconciled = sum(any(h.get("detail", {}).get("via") == "reconciler" for h in r.get("history", []))
                     for r in records.values())
    console.print(f"gateway retries: {retries} · settled by the reconciler: {reconciled} · re-sent after "
                  f"'not known': {redriven}")
    for line in _webhook_lines(webhooks, len(plans)):
        console.print(line)
    wrong = [p for p in plans if records[p.payload["tradeNo"]].get("state") != p.expect]
    for plan in wrong:
        console.print(f"[red]✗ {plan.payload['tradeNo']} ({plan.label}): expected {plan.expect}, "
                      f"got {records[plan.payload['tradeNo']].get('state')}")
    twice = _created_twice(sandbox_url, plans)
    console.print(f"created twice at the gateway: {len(twice)}" + (f" ({', '.join(twice)})" if twice else ""))
    if not wrong and not twice:
        console.print("[green]✓ every job ended as planned; none lost, none created twice[/green]")


def _created_twice(sandbox_url: str, plans: list[Plan]) -> list[str]:
    """tradeNos the sandbox was asked to create again after it had created them."""
    counts = requests.get(sandbox_url + "/_sandbox/stats", timeout=5).json()["checkout"]
    return [p.payload["tradeNo"] for p in plans
            if counts.get(p.payload["tradeNo"], {}).get("duplicates", 0) or
            counts.get(p.payload["tradeNo"], {}).get("created", 0) > 1]


def _print_where_next(console: Console, urls: dict, log_dir: Path, plans: list[Plan], settings: Settings,
                      serve: bool) -> None:
    sample = next(p.payload["tradeNo"] for p in plans if p.expect == states.SUCCEEDED)
    console.print("\n[bold]Where to look next[/bold]")
    console.print(f"  logs of every process (kept): {log_dir}")
    if not serve:
        console.print("  run [bold]vexora-checkout demo --serve[/bold] to keep everything up and look around")
        return
    console.print(f"  one job:   REDIS_URL={urls['redis']} vexora-checkout status {sample} --watch")
    console.print(f"  cashier:   every job's paymentLink is a page of the sandbox ({urls['sandbox']}/cashier/...)")
    console.print(f"  webhooks:  {urls['receiver']}/_receiver/events  (what the merchant's receiver verified; "
                  "/_receiver/stats)")
    console.print(f"  enqueue:   REDIS_URL={urls['redis']} VEXORA_NOTIFY_URL={urls['web']}/vexora/notify "
                  "vexora-checkout enqueue jobs.csv --wait")
    console.print(f"  events:    redis-cli -u {urls['redis']} XRANGE {settings.key_prefix}:events - + COUNT 10")
    if urls.get("flower"):
        console.print(f"  Flower:    {urls['flower']}  (user:password {urls['flower_auth']})")
    console.print(f"  HTTP API:  {urls['web']}/v1/openapi.json  (bearer token {urls['api_token']})")

"""The ``vexora-checkout`` command line.

Settings come from the environment (``worker.settings``); options given here override them.
Every command but ``demo`` (which checks the environment it builds) and ``--help`` checks them
first. Exit codes: 0 done; 1 a failure the message explains (e.g. Redis unreachable); 2 bad
usage or bad settings (each ``VAR: problem`` printed); 3 invalid input rows (nothing enqueued);
4 ``--wait``: some jobs did not get a payment link.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import click
import redis

from worker import __version__
from worker.redis_ha import safe_url
from worker.errors import ConfigurationError
from worker.settings import Settings
from worker.startup import refuse

__all__ = ["main", "web_argv"]

EXIT_FAILED, EXIT_INVALID, EXIT_NOT_PAYING = 1, 3, 4
_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
_LINK_STATES = {"paying", "succeeded", "partially_paid", "failed"}
_FINAL_WITHOUT_LINK = {"rejected", "declined", "unknown"}
# Commands that serve log at INFO (their log is what they show); the others warnings and errors
# only, so that their own output (a progress bar, tradeNos, JSON) is not buried under a line a job.
_SERVING = {"sandbox"}


class _Checked(click.Group):
    """The settings are checked once the command is known, before it runs; a bad setting found
    then or later ends the command with its lines and status 2, never a traceback."""

    def resolve_command(self, ctx, args):
        name, command, rest = super().resolve_command(ctx, args)
        wants_help = any(arg in ctx.help_option_names for arg in rest)
        if name != "demo" and not wants_help and not ctx.resilient_parsing:
            Settings.from_env()
        return name, command, rest

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfigurationError as exc:
            refuse(exc)


@click.group(cls=_Checked, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
# the version given, not looked up in the installed metadata by click: the same under `python -m`
@click.version_option(__version__, "-V", "--version", prog_name="vexora-checkout")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Vexora checkout worker: enqueue checkouts, follow them, run the services.

    \b
    Start here:    vexora-checkout demo            (everything on this machine, ~50 checkouts)
    Enqueue:       vexora-checkout enqueue jobs.csv --wait
    Follow a job:  vexora-checkout status TRADENO --watch
    Review queue:  vexora-checkout review [query | resolve] ...
    Dead letters:  vexora-checkout dead-letters [--requeue]    (RabbitMQ broker only)
    Webhooks:      vexora-checkout webhooks [list | add | disable | enable | rotate | replay | attempts]
    Run:           vexora-checkout worker [--webhooks] | beat | web | sandbox

    Configuration is by environment: REDIS_URL, VEXORA_BASE_URL, VEXORA_MERCHANT_NO,
    VEXORA_APP_SECRET (or VEXORA_APP_SECRET_FILE), VEXORA_NOTIFY_URL, VEXORA_API_TOKEN; every
    variable is checked before a command runs (bad settings: their lines, exit 2).
    Logs: one line an event on stderr, logfmt (VEXORA_LOG_FORMAT=json for JSON).
    """
    from worker import logs
    from worker.errors import ConfigurationError

    try:
        fmt = Settings.from_env().log_format
    except ConfigurationError:
        fmt = "logfmt"  # the command that needs the settings says what is wrong with them
    logs.configure(fmt, logging.INFO if ctx.invoked_subcommand in _SERVING else logging.WARNING)


@main.command()
@click.option("--serve", is_flag=True, help="Keep everything running after the batch; Ctrl-C stops it.")
@click.option("--size", default=50, show_default=True, type=click.IntRange(15, 2000), help="Jobs in the batch.")
@click.option("--timeout", default=180.0, show_default=True, type=float, help="Seconds to wait for the batch.")
@click.option("--seed", default=None, type=int, help="Seed for the batch's random parts.")
def demo(serve: bool, size: int, timeout: float, seed: int | None) -> None:
    """The whole life of a batch of checkouts on this machine.

    Starts a private Redis (unless REDIS_URL is set), the sandbox gateway, the web app, a worker,
    beat and Flower (when installed); enqueues the batch; a payer bot clicks the cashier pages;
    shows live progress and a summary. Exits 0 when every job ended as planned.
    """
    from worker.local.demo import run_demo

    sys.exit(run_demo(size=size, serve=serve, timeout=timeout, seed=seed))


@main.command()
@click.argument("source", type=click.File("r", encoding="utf-8"), default="-")
@click.option("--format", "fmt", type=click.Choice(["auto", "json", "jsonl", "csv"]), default="auto",
              show_default=True, help="File format; auto decides by the file name (stdin: json).")
@click.option("--skip-invalid", is_flag=True, help="Enqueue the valid rows even if some are invalid.")
@click.option("--wait", "wait_", is_flag=True, help="Wait until each job has a payment link (or fails).")
@click.option("--timeout", default=120.0, show_default=True, type=float, help="Seconds --wait waits.")
def enqueue(source, fmt: str, skip_invalid: bool, wait_: bool, timeout: float) -> None:
    """Enqueue checkout jobs from SOURCE (a JSON array, JSON Lines or CSV file; - for stdin).

    Every row is validated first; invalid rows are listed with their line and field and, unless
    --skip-invalid, nothing is enqueued (exit 3). Each row's tradeNo is its idempotency key:
    running the same file again enqueues nothing twice.
    """
    from rich.console import Console
    from rich.progress import track

    from worker.batch import BatchError, detect_format, invalid_rows, read_rows
    from worker.client import enqueue_checkout
    from worker.errors import InvalidError
    from worker.runtime import get_runtime

    console = Console(stderr=True)
    fmt = detect_format(source.name) if fmt == "auto" else fmt
    try:
        rows = read_rows(source, fmt)
    except BatchError as exc:
        raise click.ClickException(str(exc)) from None
    runtime = get_runtime()
    refused = invalid_rows(rows, runtime.schema)
    for row, errors in refused:
        for field_name, messages in errors.items():
            console.print(f"line {row.line}: {field_name}: {'; '.join(map(str, messages))}")
    if refused and not skip_invalid:
        console.print(f"[red]{len(refused)} of {len(rows)} rows are invalid; nothing was enqueued.")
        sys.exit(EXIT_INVALID)
    bad_lines = {row.line for row, _ in refused}
    trade_nos = []
    try:
        for row in track([r for r in rows if r.line not in bad_lines], description="enqueueing", console=console):
            try:
                trade_nos.append(enqueue_checkout(row.payload, runtime=runtime))
            except InvalidError as exc:
                console.print(f"line {row.line}: {exc.message}")
    except _REDIS_DOWN as exc:
        # NotReplicatedError too (a redis ConnectionError): not confirmed by the replicas in time
        raise click.ClickException(f"Redis unreachable at {safe_url(runtime.settings.redis_url)}: {exc}") from None
    for trade_no in trade_nos:
        click.echo(trade_no)
    console.print(f"enqueued {len(trade_nos)} jobs" + (f", skipped {len(refused)} invalid" if refused else ""))
    if wait_ and not _wait_for_links(runtime.store, trade_nos, timeout, console):
        sys.exit(EXIT_NOT_PAYING)


def _wait_for_links(store, trade_nos: list[str], timeout: float, console) -> bool:
    from rich.progress import Progress

    from worker.waiting import TimedOut, wait_until

    pending, results = set(trade_nos), {}
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("waiting for payment links", total=len(trade_nos))

        def all_answered() -> bool:
            for trade_no in list(pending):
                record = store.get(trade_no) or {}
                if record.get("state") in _LINK_STATES | _FINAL_WITHOUT_LINK:
                    results[trade_no] = record
                    pending.discard(trade_no)
                    progress.advance(bar)
            return not pending

        try:
            wait_until(all_answered, timeout=timeout, interval=0.2, what="payment links")
        except TimedOut:
            pass  # the jobs still pending are listed as timed out below
    for trade_no in trade_nos:
        record = results.get(trade_no, {"state": "timed out"})
        console.print(f"{trade_no}  {record['state']:<14} {record.get('paymentLink') or ''}")
    return not pending and all(r["state"] in _LINK_STATES for r in results.values())


@main.command()
@click.argument("trade_no")
@click.option("--watch", is_flag=True, help="Follow the job's events until it reaches a final state.")
def status(trade_no: str, watch: bool) -> None:
    """Print one job's record (payer data masked) as JSON; exit 1 if there is no such job."""
    from worker import states
    from worker.runtime import get_runtime

    store = get_runtime().store
    try:
        last_id = store.last_event_id()
        record = store.get(trade_no)
    except _REDIS_DOWN as exc:
        raise click.ClickException(f"Redis unreachable: {exc}") from None
    if record is None:
        click.echo(f"no job with tradeNo {trade_no}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(json.dumps(record, ensure_ascii=False, indent=2))
    if not watch:
        return
    state = record["state"]
    while state not in states.TERMINAL:
        for event_id, event in store.events(after=last_id, block_ms=5000, count=100):
            last_id = event_id
            if event.get("tradeNo") == trade_no:
                click.echo(f"{time.strftime('%H:%M:%S')} {event.get('from') or '-'} -> {event.get('to') or '-'} "
                           f"{event.get('detail')}")
                state = event.get("to") or state


@main.command()
@click.option("--now", is_flag=True, help="Run one pass here and print it, instead of queueing the task.")
def reconcile(now: bool) -> None:
    """Settle unknown and stale jobs by querying the gateway (what beat runs periodically)."""
    from worker.runtime import get_runtime

    runtime = get_runtime()
    if now:
        click.echo(json.dumps(runtime.reconciler.run(), indent=2))
    else:
        runtime.send("vexora.reconcile")
        click.echo("vexora.reconcile queued")


@main.command("migrate-keys")
def migrate_keys() -> None:
    """Rename a job's keys from their names before the {tradeNo} hash tags (an upgrade step:
    stop the workers first). Keeps each key's TTL; running it again renames nothing."""
    from worker.migrate import migrate_keys as migrate
    from worker.runtime import get_runtime

    runtime = get_runtime()
    try:
        done = migrate(runtime.redis, runtime.settings.key_prefix)
    except _REDIS_DOWN as exc:
        raise click.ClickException(f"Redis unreachable: {exc}") from None
    renamed = {k: v for k, v in done.items() if k not in ("kept", "gone")}
    click.echo(f"renamed {sum(renamed.values())} keys"
               + "".join(f", {kind} {n}" for kind, n in sorted(renamed.items())))
    click.echo(f"kept {done['kept']} (already under the new name), gone {done['gone']} (expired meanwhile)")


@main.command("dead-letters")
@click.option("--requeue", is_flag=True, help="Put every dead letter back on its queue (expired beat ticks: dropped).")
def dead_letters(requeue: bool) -> None:
    """RabbitMQ only: what the dead-letter queues (<queue>.dead) hold, by reason and task."""
    from worker import deadletters
    from worker.runtime import get_runtime

    runtime = get_runtime()
    if not runtime.settings.broker_is_rabbitmq:
        click.echo("the broker is Redis (VEXORA_BROKER_URL is not amqp://): it has no dead-letter queues", err=True)
        sys.exit(EXIT_FAILED)
    found = (deadletters.requeue if requeue else deadletters.inspect)(runtime.celery)
    for dead in found:
        click.echo(dead.line())
    if requeue:
        click.echo(f"requeued {sum(d.requeued for d in found)}, "
                   f"dropped {sum(d.dropped_expired for d in found)} expired beat ticks")


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="The queue as JSON.")
@click.pass_context
def review(ctx: click.Context, as_json: bool) -> None:
    """The review queue: jobs flagged for a person (list; query; resolve).

    \b
    vexora-checkout review                                  the queue, oldest flag first
    vexora-checkout review query TRADENO                    ask the gateway now
    vexora-checkout review resolve TRADENO --state succeeded --reason "..." --operator alice
    """
    if ctx.invoked_subcommand is not None:
        return
    from worker.runtime import get_runtime

    try:
        items = get_runtime().review.items()
    except _REDIS_DOWN as exc:
        raise click.ClickException(f"Redis unreachable: {exc}") from None
    if as_json:
        click.echo(json.dumps(items, ensure_ascii=False, indent=2))
        return
    if not items:
        click.echo("the review queue is empty")
        return
    for item in items:
        click.echo(f"{item['tradeNo']}  {item['state']:<15} amount={item.get('amount', '-')} "
                   f"paid={item.get('paidAmount', '-')}  age={item['ageSeconds']}s  "
                   f"checks={item.get('reconcileChecks', 0)}  {item.get('reviewReason', '')}")


@review.command("query")
@click.argument("trade_no")
def review_query(trade_no: str) -> None:
    """Ask the gateway about TRADENO now; its answer is applied by the normal rules."""
    from worker.errors import CheckoutError
    from worker.review import NoSuchJob
    from worker.runtime import get_runtime

    try:
        answer = get_runtime().review.query(trade_no)
    except NoSuchJob:
        raise click.ClickException(f"no job with tradeNo {trade_no}") from None
    except CheckoutError as exc:
        raise click.ClickException(f"the gateway gave no usable answer: {exc}") from None
    click.echo(json.dumps(answer, ensure_ascii=False, indent=2))


@review.command("resolve")
@click.argument("trade_no")
@click.option("--state", type=click.Choice(["succeeded", "failed"]), required=True, help="The outcome decided.")
@click.option("--reason", required=True, help="Why (kept in the job's history).")
@click.option("--operator", required=True, help="Who decides (kept in the job's history).")
def review_resolve(trade_no: str, state: str, reason: str, operator: str) -> None:
    """Settle TRADENO, which is waiting for a person, as succeeded or failed."""
    from worker.errors import InvalidError
    from worker.review import NoSuchJob, NotInReview
    from worker.runtime import get_runtime

    try:
        record = get_runtime().review.resolve(trade_no, state, reason, operator)
    except NoSuchJob:
        raise click.ClickException(f"no job with tradeNo {trade_no}") from None
    except NotInReview as exc:
        raise click.ClickException(str(exc)) from None
    except InvalidError as exc:
        raise click.ClickException(f"{exc.message}: {exc.errors}") from None
    click.echo(f"{trade_no} resolved as {record['state']} by {operator}")


@main.group()
def webhooks() -> None:
    """Signed webhooks to your apps: endpoints, replay, attempts.

    \b
    vexora-checkout webhooks list
    vexora-checkout webhooks add https://shop.example/hooks [--type checkout.succeeded ...]
    vexora-checkout webhooks disable|enable|rotate ENDPOINT_ID
    vexora-checkout webhooks replay --since 2026-12-03T09:00Z [--until ...] [--endpoint ID] [--all]
    vexora-checkout webhooks attempts TRADENO
    """


def _webhooks_runtime():
    from worker.runtime import get_runtime
    return get_runtime()


def _endpoint_line(record: dict) -> str:
    state = "enabled" if record["enabled"] else f"disabled ({record.get('disabledReason')})"
    types = ",".join(record.get("types") or []) or "all events"
    return f"{record['id']}  {record['url']}  {state}  {types}"


@webhooks.command("list")
def webhooks_list() -> None:
    """The endpoints (secrets never shown; only their last characters)."""
    from worker.webhooks.endpoints import Endpoints
    try:
        records = _webhooks_runtime().webhook_endpoints.all()
    except _REDIS_DOWN as exc:
        raise click.ClickException(f"Redis unreachable: {exc}") from None
    for record in records:
        tails = ", ".join("…" + s["secretEnd"] for s in Endpoints.public(record)["secrets"])
        click.echo(_endpoint_line(record) + f"  secrets {tails}")
    if not records:
        click.echo("no endpoints (set VEXORA_WEBHOOK_URL, or add one)")


@webhooks.command("add")
@click.argument("url")
@click.option("--type", "types", multiple=True, help="Only these event types (repeatable; default: all).")
@click.option("--secret", default=None, help="A whsec_ secret (default: a new one, printed once).")
def webhooks_add(url: str, types: tuple[str, ...], secret: str | None) -> None:
    """Add an endpoint; prints its secret once."""
    from worker.errors import InvalidError
    try:
        record = _webhooks_runtime().webhook_endpoints.add(url, types=types, secret=secret)
    except InvalidError as exc:
        raise click.ClickException(f"{exc.message}: {exc.errors}") from None
    click.echo(_endpoint_line(record))
    click.echo(f"secret: {record['secrets'][0]['secret']}")


@webhooks.command("disable")
@click.argument("endpoint_id")
def webhooks_disable(endpoint_id: str) -> None:
    """Stop sending to an endpoint."""
    try:
        click.echo(_endpoint_line(_webhooks_runtime().webhook_endpoints.set_enabled(endpoint_id, False)))
    except KeyError:
        raise click.ClickException(f"no endpoint {endpoint_id}") from None


@webhooks.command("enable")
@click.argument("endpoint_id")
def webhooks_enable(endpoint_id: str) -> None:
    """Send to an endpoint again (replay what it missed with `replay --endpoint`)."""
    try:
        click.echo(_endpoint_line(_webhooks_runtime().webhook_endpoints.set_enabled(endpoint_id, True)))
    except KeyError:
        raise click.ClickException(f"no endpoint {endpoint_id}") from None


@webhooks.command("rotate")
@click.argument("endpoint_id")
@click.option("--secret", default=None, help="The new whsec_ secret (default: a new one, printed once).")
def webhooks_rotate(endpoint_id: str, secret: str | None) -> None:
    """A new secret; the old one still signs for VEXORA_WEBHOOK_ROTATION_GRACE seconds."""
    from worker.errors import InvalidError
    try:
        record = _webhooks_runtime().webhook_endpoints.rotate(endpoint_id, secret)
    except KeyError:
        raise click.ClickException(f"no endpoint {endpoint_id}") from None
    except InvalidError as exc:
        raise click.ClickException(f"{exc.message}: {exc.errors}") from None
    click.echo(f"secret: {record['secrets'][0]['secret']}")


@webhooks.command("replay")
@click.option("--since", required=True, help="ISO-8601 time (or unix seconds): events from then.")
@click.option("--until", default=None, help="ISO-8601 time (or unix seconds): events until then.")
@click.option("--endpoint", default=None, help="Only this endpoint.")
@click.option("--all", "include_delivered", is_flag=True, help="Also events already delivered.")
def webhooks_replay(since: str, until: str | None, endpoint: str | None, include_delivered: bool) -> None:
    """Deliver again the failed (or all) events of a window."""
    from worker.webhooks.http import parse_time_ms
    try:
        since_ms = parse_time_ms(since)
        until_ms = parse_time_ms(until) if until else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    try:
        count = _webhooks_runtime().webhook_dispatcher.replay(since_ms, until_ms, endpoint_id=endpoint,
                                                               include_delivered=include_delivered)
    except KeyError:
        raise click.ClickException(f"no enabled endpoint {endpoint}") from None
    click.echo(f"{count} deliveries scheduled")


@webhooks.command("attempts")
@click.argument("trade_no")
def webhooks_attempts(trade_no: str) -> None:
    """Every delivery attempt of a job's events: time, endpoint, type, status, latency."""
    import datetime as _dt
    for a in _webhooks_runtime().webhook_dispatcher.attempts(trade_no):
        at = _dt.datetime.fromtimestamp(a["at"] / 1000, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        click.echo(f"{at}  {a['endpoint']}  {a['type']}  seq={a['sequence']}  attempt={a['attempt']}  "
                   f"status={a['status']}  {a['latencyMs']} ms")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8900, show_default=True, type=int, help="Port to listen on.")
@click.option("--public-url", default=None, help="Base URL for payment links (default: http://HOST:PORT).")
@click.option("--time-factor", default=1.0, show_default=True, type=float,
              help="Scale the callback resend schedule (2 s, 5 s, ... 3 h); 0.01 makes 2 s into 20 ms.")
@click.option("--autopay", default=None, metavar="MIX",
              help="Settle every checkout by itself, e.g. 'paid=0.8,partial=0.05,failed=0.15'.")
@click.option("--autopay-delay", default=1.0, show_default=True, type=float,
              help="Seconds between a checkout's creation and its automatic outcome.")
@click.option("--ip-limits/--no-ip-limits", default=False, show_default=True,
              help="Refuse a payer IP's 11th checkout, or any after 3 paid, in a Japan day.")
def sandbox(host: str, port: int, public_url: str | None, time_factor: float, autopay: str | None,
            autopay_delay: float, ip_limits: bool) -> None:
    """Run the sandbox gateway (development and tests only; never for real money).

    It accepts requests signed with VEXORA_MERCHANT_NO and VEXORA_APP_SECRET, serves a cashier
    page at each payment link, and sends signed callbacks to each checkout's notifyUrl.
    """
    from worker import sandbox as sandbox_module
    from worker.sandbox.cashier import parse_mix

    settings = Settings.from_env()
    if not settings.merchant_no or not settings.app_secret:
        raise click.UsageError("set VEXORA_MERCHANT_NO and VEXORA_APP_SECRET for the sandbox")
    try:
        mix = parse_mix(autopay) if autopay else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--autopay") from None
    sandbox_module.run(host, port, merchant_no=settings.merchant_no, app_secret=settings.app_secret,
                       public_url=public_url, time_factor=time_factor, ip_limits=ip_limits,
                       autopay={"mix": mix, "delay": autopay_delay} if mix else None)


@main.command()
@click.option("--bind", default=None, help="Address for gunicorn  [default: 0.0.0.0:$PORT when PORT is set, "
                                           "else 127.0.0.1:8000]")
@click.option("--workers", default=None, type=int, help="gunicorn worker processes  [default: "
                                                        "$WEB_CONCURRENCY, else 2]")
@click.option("--threads", default=None, type=int, help="Threads per worker process  [default: "
                                                        "$GUNICORN_THREADS, else 8]")
def web(bind: str | None, workers: int | None, threads: int | None) -> None:
    """Run the web app under gunicorn, with gunicorn.conf.py: callbacks, the producer API, health."""
    given = {"--bind": bind, "--workers": workers, "--threads": threads}
    _exec(*web_argv(*(part for flag, value in given.items() if value is not None for part in (flag, str(value)))))


def gunicorn_conf() -> Path:
    """gunicorn.conf.py: the repository's (next to this package), else the working directory's
    (the Docker image's /app) — where gunicorn itself would look."""
    for candidate in (Path(__file__).resolve().parents[1] / "gunicorn.conf.py", Path.cwd() / "gunicorn.conf.py"):
        if candidate.is_file():
            return candidate
    raise click.ClickException("gunicorn.conf.py not found: run from the repository, or give gunicorn "
                               "-c with its path")


def web_argv(*flags: str) -> list[str]:
    """``-m gunicorn worker.web:app -c <gunicorn.conf.py> FLAGS``, for a Python interpreter; the
    flags win over the file (the tests and the demo bind a port of their own)."""
    return ["-m", "gunicorn", "worker.web:app", "-c", str(gunicorn_conf()), *flags]


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--concurrency", "-c", type=int, help="Threads in this worker [default: 16; 8 with --webhooks].")
@click.option("--webhooks", "webhooks_only", is_flag=True,
              help="Be a webhook worker: the `webhooks` queue only (run one beside the checkout workers).")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(concurrency: int | None, webhooks_only: bool, celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker on the checkout, callbacks and reconcile queues, or with --webhooks on
    the webhooks queue (extra arguments go to celery)."""
    if webhooks_only:
        queues, threads = ["-Q", "webhooks", "-n", "webhooks@%h"], concurrency or 8
    else:
        queues, threads = ["-Q", "checkout,callbacks,reconcile"], concurrency or 16
    _exec("-m", "celery", "-A", "worker", "worker", *queues, "--pool", "threads",
          "--concurrency", str(threads), "--loglevel", "INFO", *celery_args)


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def beat(celery_args: tuple[str, ...]) -> None:
    """Run Celery beat, which schedules the reconciler. Run exactly one."""
    # --quiet: no banner printed between the log lines ("beat: Starting..." is logged anyway)
    _exec("-m", "celery", "-A", "worker", "--quiet", "beat", "--loglevel", "INFO", *celery_args)


def _exec(*args: str) -> None:
    os.execv(sys.executable, [sys.executable, *args])


if __name__ == "__main__":
    main()

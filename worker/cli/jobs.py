"""Commands on checkout jobs: ``enqueue`` (a batch from a file), ``status`` (one job), ``reconcile``."""

from __future__ import annotations

import json
import sys
import time

import click

from worker.cli.main import EXIT_FAILED, EXIT_INVALID, EXIT_NOT_PAYING, REDIS_DOWN, main
from worker.config.redis_url import safe_url
from worker.config.settings import Settings

_LINK_STATES = {"paying", "succeeded", "partially_paid", "failed"}
_FINAL_WITHOUT_LINK = {"rejected", "declined", "unknown"}


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

    from worker.cli.batch import BatchError, detect_format, invalid_rows, read_rows
    from worker.client import enqueue_checkout
    from worker.domain.errors import InvalidError
    from worker.runtime.wiring import get_runtime

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
    except REDIS_DOWN as exc:
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
    from worker.domain import states
    from worker.runtime.wiring import get_runtime

    store = get_runtime().store
    try:
        last_id = store.last_event_id()
        record = store.get(trade_no)
    except REDIS_DOWN as exc:
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
    from worker.runtime.wiring import get_runtime

    if now:
        Settings.from_env().require_gateway()  # which variables are missing, before anything runs
    runtime = get_runtime()
    if now:
        click.echo(json.dumps(runtime.reconciler.run(), indent=2))
    else:
        runtime.send("vexora.reconcile")
        click.echo("vexora.reconcile queued")

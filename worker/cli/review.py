"""``vexora-checkout review``: the review queue, a gateway query for one job, a person's resolve.

Who resolves or dismisses is the shell user, recorded as ``cli:<user>`` (the CLI reaches Redis
directly, so it is trusted as whoever runs it); ``--operator`` is ignored, with a notice. Each
query, resolve and dismissal is audited.
"""

from __future__ import annotations

import json

import click

from worker.cli.main import REDIS_DOWN, failed, main, shell_principal

_AUDITED = ("state", "version", "needsReview", "reviewReason", "amount", "paidAmount", "resolvedBy",
            "resolvedReason", "resolvedAmount", "account")


def _audited(record: dict | None) -> dict:
    return {name: record[name] for name in _AUDITED if record and name in record}


def _ignored(operator: str | None) -> None:
    if operator is not None:
        click.echo("notice: --operator is ignored: the CLI records who runs it "
                   f"({shell_principal().label})", err=True)


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="The queue as JSON.")
@click.pass_context
def review(ctx: click.Context, as_json: bool) -> None:
    """The review queue: jobs flagged for a person (list; query; resolve).

    \b
    vexora-checkout review                                  the queue, oldest flag first
    vexora-checkout review query TRADENO                    ask the gateway now
    vexora-checkout review resolve TRADENO                  the record and its version
    vexora-checkout review resolve TRADENO --version 7 --state succeeded --amount 300 \
        --reason "..."                                   settle it, if still at version 7
    vexora-checkout review dismiss TRADENO --reason "..."
                                                            money reported for no job: looked at
    """
    if ctx.invoked_subcommand is not None:
        return
    from worker.runtime.wiring import get_runtime

    try:
        items = get_runtime().review.items()
        orphans = get_runtime().review.orphans()
    except REDIS_DOWN as exc:
        raise click.ClickException(f"Redis unreachable: {exc}") from None
    if as_json:
        click.echo(json.dumps(items, ensure_ascii=False, indent=2))  # the jobs, as before; orphans: the API
        return
    if not items and not orphans:
        click.echo("the review queue is empty")
        return
    for item in items:
        click.echo(f"{item['tradeNo']}  {item['state']:<15} version={item.get('version', 0)} "
                   f"amount={item.get('amount', '-')} paid={item.get('paidAmount', '-')}  age={item['ageSeconds']}s  "
                   f"checks={item.get('reconcileChecks', 0)}  {item.get('reviewReason', '')}")
    for orphan in orphans:
        click.echo(f"{orphan['tradeNo']}  NO JOB          {orphan['source']} status={orphan['status']} "
                   f"paid={orphan.get('paidAmount', '-')}  reports={orphan['reports']}  "
                   "(money reported for no job: check at the gateway, then dismiss)")

@review.command("query")
@click.argument("trade_no")
def review_query(trade_no: str) -> None:
    """Ask the gateway about TRADENO now; its answer is applied by the normal rules."""
    from worker.domain.errors import CheckoutError
    from worker.flows.review import NoSuchJob
    from worker.config.settings import Settings
    from worker.runtime.wiring import get_runtime

    Settings.from_env().require_gateway()  # which variables are missing, before anything is read
    runtime = get_runtime()
    before = runtime.store.get(trade_no)
    try:
        answer = runtime.review.query(trade_no)
    except NoSuchJob:
        raise click.ClickException(f"no job with tradeNo {trade_no}") from None
    except CheckoutError as exc:
        runtime.audit.record(shell_principal(), "review.query", target=trade_no,
                             account=(before or {}).get("account", "default"), before=_audited(before),
                             detail={"error": exc.message})
        raise click.ClickException(f"the gateway gave no usable answer: {exc}") from None
    runtime.audit.record(shell_principal(), "review.query", target=trade_no,
                         account=(before or {}).get("account", "default"), before=_audited(before),
                         after=_audited(answer.get("record")),
                         detail={"gateway": answer.get("gateway"), "result": answer.get("result")})
    click.echo(json.dumps(answer, ensure_ascii=False, indent=2))

@review.command("resolve")
@click.argument("trade_no")
@click.option("--version", "version", type=int, default=None,
              help="The record's version you decided on (shown without --version); refused when it changed.")
@click.option("--state", type=click.Choice(["succeeded", "failed"]), help="The outcome decided.")
@click.option("--amount", help="With succeeded: the amount in yen you confirmed paid.")
@click.option("--reason", help="Why (kept in the job's history).")
@click.option("--operator", hidden=True, help="Ignored: the shell user is recorded.")
def review_resolve(trade_no: str, version: int | None, state: str | None, amount: str | None,
                   reason: str | None, operator: str | None) -> None:
    """Settle TRADENO, which is waiting for a person, as succeeded or failed.

    Without --version it only shows the record you decide on and its version: run it again with
    --version N. The resolve is refused, and nothing changes, when the job changed since N.
    """
    from worker.domain.errors import InvalidError
    from worker.flows.review import NoSuchJob, NotInReview, VersionChanged
    from worker.runtime.wiring import get_runtime

    _ignored(operator)
    runtime = get_runtime()
    if version is None:
        record = runtime.store.get(trade_no)
        if record is None:
            raise click.ClickException(f"no job with tradeNo {trade_no}")
        record.pop("contact", None)
        click.echo(json.dumps(record, ensure_ascii=False, indent=2))
        raise click.UsageError(f"check the record above, then resolve it with --version {record.get('version', 0)}")
    if state is None or reason is None:
        raise click.UsageError("--state and --reason are required with --version")
    who = shell_principal()
    before = runtime.store.get(trade_no)
    try:
        record = runtime.review.resolve(trade_no, state, reason, operator=who.label, version=version, amount=amount)
    except NoSuchJob:
        raise click.ClickException(f"no job with tradeNo {trade_no}") from None
    except VersionChanged as exc:
        raise click.ClickException(f"{exc}: run `vexora-checkout review resolve {trade_no}` again; "
                                   "nothing was changed") from None
    except NotInReview as exc:
        raise click.ClickException(str(exc)) from None
    except InvalidError as exc:
        raise failed(exc) from None
    runtime.audit.record(who, "review.resolve", target=trade_no, account=(before or {}).get("account", "default"),
                         before=_audited(before), after=_audited(record), detail={"state": state, "reason": reason})
    click.echo(f"{trade_no} resolved as {record['state']} by {who.label}")


@review.command("dismiss")
@click.argument("trade_no")
@click.option("--reason", required=True, help="Why it needs nothing more (e.g. refunded at the gateway).")
@click.option("--operator", hidden=True, help="Ignored: the shell user is recorded.")
def review_dismiss(trade_no: str, reason: str, operator: str | None) -> None:
    """Dismiss money the gateway reported for TRADENO, which has no job, once you have looked at it."""
    from worker.domain.errors import InvalidError
    from worker.flows.review import NoSuchJob, NotInReview
    from worker.runtime.wiring import get_runtime

    _ignored(operator)
    who = shell_principal()
    try:
        entry = get_runtime().review.dismiss(trade_no, reason, operator=who.label)
    except NoSuchJob:
        raise click.ClickException(f"no orphan report for tradeNo {trade_no}") from None
    except NotInReview as exc:
        raise click.ClickException(str(exc)) from None
    except InvalidError as exc:
        raise failed(exc) from None
    get_runtime().audit.record(who, "review.dismiss", target=trade_no, account=entry.get("account", ""),
                               detail={"reason": reason})
    click.echo(f"{trade_no} dismissed by {who.label}")

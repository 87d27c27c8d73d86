"""``vexora-checkout review``: the review queue, a gateway query for one job, a person's resolve."""

from __future__ import annotations

import json

import click

from worker.cli.main import REDIS_DOWN, main


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
    from worker.runtime.wiring import get_runtime

    try:
        items = get_runtime().review.items()
    except REDIS_DOWN as exc:
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
    from worker.domain.errors import CheckoutError
    from worker.flows.review import NoSuchJob
    from worker.runtime.wiring import get_runtime

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
    from worker.domain.errors import InvalidError
    from worker.flows.review import NoSuchJob, NotInReview
    from worker.runtime.wiring import get_runtime

    try:
        record = get_runtime().review.resolve(trade_no, state, reason, operator)
    except NoSuchJob:
        raise click.ClickException(f"no job with tradeNo {trade_no}") from None
    except NotInReview as exc:
        raise click.ClickException(str(exc)) from None
    except InvalidError as exc:
        raise click.ClickException(f"{exc.message}: {exc.errors}") from None
    click.echo(f"{trade_no} resolved as {record['state']} by {operator}")

"""Maintenance commands: ``migrate-keys`` (key names before the hash tags) and ``dead-letters`` (RabbitMQ)."""

from __future__ import annotations

import sys

import click

from worker.cli.main import EXIT_FAILED, REDIS_DOWN, main


@main.command("migrate-keys")
def migrate_keys() -> None:
    """Rename a job's keys from their names before the {tradeNo} hash tags (an upgrade step:
    stop the workers first). Keeps each key's TTL; running it again renames nothing. Then removes
    the TTL older versions gave open and flagged jobs (they are kept until closed and resolved)."""
    from worker.store.migrate import migrate_keys as migrate
    from worker.store.migrate import persist_kept_jobs
    from worker.runtime.wiring import get_runtime

    runtime = get_runtime()
    try:
        done = migrate(runtime.redis, runtime.settings.key_prefix)
    except REDIS_DOWN as exc:
        raise click.ClickException(f"Redis unreachable: {exc}") from None
    renamed = {k: v for k, v in done.items() if k not in ("kept", "gone")}
    click.echo(f"renamed {sum(renamed.values())} keys"
               + "".join(f", {kind} {n}" for kind, n in sorted(renamed.items())))
    click.echo(f"kept {done['kept']} (already under the new name), gone {done['gone']} (expired meanwhile)")
    try:
        persisted = persist_kept_jobs(runtime.redis, runtime.settings.key_prefix)
    except REDIS_DOWN as exc:
        raise click.ClickException(f"Redis unreachable: {exc}") from None
    click.echo(f"open or flagged job keys no longer expiring: {persisted}")

@main.command("dead-letters")
@click.option("--requeue", is_flag=True, help="Put every dead letter back on its queue (expired beat ticks: dropped).")
def dead_letters(requeue: bool) -> None:
    """RabbitMQ only: what the dead-letter queues (<queue>.dead) hold, by reason and task."""
    from worker.runtime import deadletters
    from worker.runtime.wiring import get_runtime

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

"""``vexora-checkout audit``: the audit log, newest first (docs/design.md §Access)."""

from __future__ import annotations

import json

import click

from worker.cli.main import REDIS_DOWN, main


@main.command()
@click.option("--since", default="24h", show_default=True,
              help="From when: an ISO-8601 time, epoch milliseconds, or a duration back from now (24h, 30m, 7d).")
@click.option("--until", default=None, help="Until when: an ISO-8601 time or epoch milliseconds.")
@click.option("--account", default=None, help="Only this account's entries (and those for every account).")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 100_000), help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
def audit(since: str, until: str | None, account: str | None, limit: int, as_json: bool) -> None:
    """Who did what, when, from where: resolves, queries, dismissals, endpoints, keys, operators, logins."""
    from worker.runtime.wiring import get_runtime
    from worker.web.audit_api import parse_when
    try:
        since_ms = parse_when(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    try:
        until_ms = parse_when(until, durations=False) if until else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--until") from None
    try:
        entries = get_runtime().audit.read(since_ms=since_ms, until_ms=until_ms, limit=limit, account=account)
    except REDIS_DOWN as exc:
        raise click.ClickException(f"Redis unreachable: {exc}") from None
    for e in entries:
        if as_json:
            click.echo(json.dumps(e, ensure_ascii=False, sort_keys=True))
            continue
        extra = "".join(f"  {name}={json.dumps(e[name], ensure_ascii=False, sort_keys=True)}"
                        for name in ("before", "after", "detail") if e.get(name) is not None)
        click.echo(f"{_when(e['at'])}  {e['actor']:<24} {e['action']:<16} {e['target'] or '-'}  "
                   f"account={e['account'] or '-'}  from={e['address'] or '-'}{extra}")
    if not entries and not as_json:
        click.echo("no audit entries in this window")


def _when(ms: int) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

"""``vexora-checkout operators``: the people who sign in to /ops (add, list, disable).

The password is read from standard input — asked twice, not echoed, at a terminal; one line when
piped — and stored only as its scrypt hash (``worker.store.operators``). Short passwords and
placeholders are refused. Adding and disabling are audited as the shell user (``cli:<user>``).
"""

from __future__ import annotations

import json
import sys

import click

from worker.cli.main import REDIS_DOWN, main, shell_principal, utc_text


def _runtime():
    from worker.runtime.wiring import get_runtime
    return get_runtime()


def _operators():
    from worker.store.operators import Operators
    rt = _runtime()
    return Operators(rt.redis, rt.store.keys)


def _read_password() -> str:
    if sys.stdin.isatty():
        import getpass
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            raise click.ClickException("the two passwords differ; nothing was added")
        return first
    return sys.stdin.readline().rstrip("\r\n")


@main.group()
def operators() -> None:
    """The people who sign in to /ops, each with a role.

    \b
    vexora-checkout operators add alice --role operator [--account shop-a]   (password from stdin)
    vexora-checkout operators list [--json]
    vexora-checkout operators disable alice

    \b
    Roles: viewer reads; operator also queries, resolves and dismisses; admin also reads the audit log.
    """


@operators.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(["viewer", "operator", "admin"]), help="What they may do.")
@click.option("--account", default="*", show_default=True, help="The one account they work on, or * for all.")
def operators_add(name: str, role: str, account: str) -> None:
    """Add an operator; the password is read from stdin (not echoed at a terminal)."""
    from worker.domain.errors import InvalidError
    password = _read_password()
    try:
        record = _operators().add(name, password, role, account)
        _runtime().audit.record(shell_principal(), "operator.add", target=record["name"],
                                account=record["account"], after=record)
    except InvalidError as exc:
        raise click.ClickException("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.errors.items())) from None
    except REDIS_DOWN as exc:
        raise click.ClickException(f"Redis unreachable: {exc}") from None
    click.echo(f"added {record['name']} ({record['role']}, account {record['account']})")


@operators.command("list")
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
def operators_list(as_json: bool) -> None:
    """Name, role, account, created, last login, disabled (never a password or its hash)."""
    try:
        records = _operators().all()
    except REDIS_DOWN as exc:
        raise click.ClickException(f"Redis unreachable: {exc}") from None
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    if not records:
        click.echo("no operators (add one: vexora-checkout operators add NAME --role operator)")
        return
    for r in records:
        click.echo(f"{r['name']:<24} {r['role']:<9} account={r['account']:<12} created={utc_text(r.get('createdAt'))}  "
                   f"last login={utc_text(r.get('lastLoginAt')) or 'never'}  {'DISABLED' if r.get('disabled') else 'active'}")


@operators.command("disable")
@click.argument("name")
def operators_disable(name: str) -> None:
    """Disable an operator: their sessions end at their next page, and they cannot sign in."""
    try:
        before, after = _operators().disable(name)
        _runtime().audit.record(shell_principal(), "operator.disable", target=after["name"],
                                account=after["account"], before=before, after=after)
    except KeyError:
        raise click.ClickException(f"no operator {name}") from None
    except REDIS_DOWN as exc:
        raise click.ClickException(f"Redis unreachable: {exc}") from None
    click.echo(f"disabled {after['name']}")



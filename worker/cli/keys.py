"""``vexora-checkout keys``: API keys — create (shown once), list, revoke.

Managing keys is an admin action: only a person at the server's shell does it (the CLI reaches
Redis directly), recorded in the audit log as ``cli:<the shell user>``.
"""

from __future__ import annotations

import json

import click

from worker.cli.main import REDIS_DOWN, main, shell_principal, utc_text


@main.group()
def keys() -> None:
    """API keys for the HTTP API: each acts for one account (or every one, *) with its scopes.

    \b
    vexora-checkout keys create --account shop-a --scope checkouts:write --scope checkouts:read --name "shop A backend"
        prints the key once, as its last line (KEY=$(vexora-checkout keys create ... | tail -1))
    vexora-checkout keys list [--json]       id, name, account, scopes, created, last used (never the key)
    vexora-checkout keys revoke KEY_ID       refused from now on

    Scopes: checkouts:write, checkouts:read, review:write, webhooks:admin, audit:read.
    """


def _store():
    from worker.runtime.wiring import get_runtime
    from worker.store.apikeys import ApiKeys
    runtime = get_runtime()
    return runtime, ApiKeys(runtime.redis, runtime.store.keys)


def _known_accounts(settings) -> list[str]:
    from worker.domain.access import DEFAULT_ACCOUNT
    accounts = getattr(settings, "accounts", None)  # VEXORA_ACCOUNTS_FILE's; without it: default
    return sorted(accounts) if accounts else [DEFAULT_ACCOUNT]


@keys.command("create")
@click.option("--account", required=True, help="The account the key acts for, or * for every account.")
@click.option("--scope", "scopes", multiple=True, required=True,
              help="A scope (repeatable): checkouts:write, checkouts:read, review:write, webhooks:admin, audit:read.")
@click.option("--name", required=True, help="What the key is for (shown by `keys list`).")
def keys_create(account: str, scopes: tuple[str, ...], name: str) -> None:
    """Create a key; prints it once, as the last line (it is stored as a hash only)."""
    from worker.domain.errors import InvalidError
    try:
        runtime, store = _store()
        record, text = store.create(name, account, scopes, known_accounts=_known_accounts(runtime.settings))
        runtime.audit.record(shell_principal(), "key.create", target=record["id"], account=account,
                             after=store.public(record))
    except InvalidError as exc:
        problems = "; ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.errors.items())
        refused = click.ClickException(f"refused: {problems}")  # one line, exit 2 (bad usage)
        refused.exit_code = 2
        raise refused from None
    except REDIS_DOWN as exc:
        raise click.ClickException(f"Redis unreachable: {exc}") from None
    click.echo(f"created {record['id']}  {record['name']}  account={record['account']}  "
               f"scopes={','.join(record['scopes'])}")
    click.echo("the key is shown this once; keep it in your secret store:")
    click.echo(text)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
def keys_list(as_json: bool) -> None:
    """Every key: id, name, account, scopes, created, last used, revoked (never the key)."""
    try:
        _runtime, store = _store()
        records = [store.public(r) for r in store.all()]
    except REDIS_DOWN as exc:
        raise click.ClickException(f"Redis unreachable: {exc}") from None
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    if not records:
        click.echo("no keys (create one with `vexora-checkout keys create`)")
    for r in records:
        revoked = f"  REVOKED {utc_text(r['revokedAt'])}" if r.get("revokedAt") else ""
        click.echo(f"{r['id']}  {r['name']!r}  account={r['account']}  scopes={','.join(r['scopes'])}  "
                   f"created {utc_text(r['createdAt'])}  last used {utc_text(r.get('lastUsedAt')) or 'never'}{revoked}")


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Refuse the key from now on (it stays listed, as revoked)."""
    try:
        runtime, store = _store()
        before = store.get(key_id)
        record = store.revoke(key_id)
        runtime.audit.record(shell_principal(), "key.revoke", target=key_id, account=record["account"],
                             before=store.public(before), after=store.public(record))
    except KeyError:
        raise click.ClickException(f"no key {key_id}") from None
    except REDIS_DOWN as exc:
        raise click.ClickException(f"Redis unreachable: {exc}") from None
    click.echo(f"revoked {key_id}")

"""``vexora-checkout webhooks``: the operator's endpoints, replay and delivery attempts."""

from __future__ import annotations

import click

from worker.cli.main import REDIS_DOWN, failed, main, shell_principal


@main.group()
def webhooks() -> None:
    """Signed webhooks to your apps: endpoints, replay, attempts.

    \b
    vexora-checkout webhooks list [--account ID]
    vexora-checkout webhooks add https://shop.example/hooks [--account ID] [--type checkout.succeeded ...]
    vexora-checkout webhooks disable|enable|rotate ENDPOINT_ID
    vexora-checkout webhooks replay --since 2026-12-03T09:00Z [--until ...] [--endpoint ID] [--all] [--account ID]

    They act for every account unless --account names one; a new endpoint is default's unless
    --account says otherwise. An endpoint gets only its own account's events.
    vexora-checkout webhooks attempts TRADENO
    vexora-checkout webhooks listen [--forward-to http://127.0.0.1:4242/hooks] [--account ID]
    """

def _webhooks_runtime():
    from worker.runtime.wiring import get_runtime
    return get_runtime()

def _endpoint_line(record: dict) -> str:
    state = "enabled" if record["enabled"] else f"disabled ({record.get('disabledReason')})"
    types = ",".join(record.get("types") or []) or "all events"
    return f"{record['id']}  account={record.get('account') or 'default'}  {record['url']}  {state}  {types}"

@webhooks.command("list")
@click.option("--account", default=None, help="Only this account's endpoints (default: every account's).")
def webhooks_list(account: str | None) -> None:
    """The endpoints (secrets never shown; only their last characters)."""
    from worker.webhooks.endpoints import Endpoints
    try:
        records = _webhooks_runtime().webhook_endpoints.all(account)
    except REDIS_DOWN as exc:
        raise click.ClickException(f"Redis unreachable: {exc}") from None
    for record in records:
        tails = ", ".join("…" + s["secretEnd"] for s in Endpoints.public(record)["secrets"])
        click.echo(_endpoint_line(record) + f"  secrets {tails}")
    if not records:
        click.echo("no endpoints (set VEXORA_WEBHOOK_URL, or add one)")


def _audited(action: str, target: str, record: dict | None = None, **detail) -> None:
    """An admin action from the shell, in the audit log (never a secret: the endpoint as public)."""
    from worker.webhooks.endpoints import Endpoints
    runtime = _webhooks_runtime()
    after = Endpoints.public(record) if record is not None else None
    runtime.audit.record(shell_principal(), action, target=target,
                         account=(record or {}).get("account") or detail.pop("account", None) or "",
                         after=after, detail=detail or None)


@webhooks.command("add")
@click.argument("url")
@click.option("--type", "types", multiple=True, help="Only these event types (repeatable; default: all).")
@click.option("--secret", default=None, help="A whsec_ secret (default: a new one, printed once).")
@click.option("--account", default="default", show_default=True, help="The account whose events it gets.")
def webhooks_add(url: str, types: tuple[str, ...], secret: str | None, account: str) -> None:
    """Add an endpoint; prints its secret once."""
    from worker.domain.errors import InvalidError
    try:
        record = _webhooks_runtime().webhook_endpoints.add(url, types=types, secret=secret, account=account)
    except InvalidError as exc:
        raise failed(exc) from None
    _audited("endpoint.add", record["id"], record)
    click.echo(_endpoint_line(record))
    click.echo(f"secret: {record['secrets'][0]['secret']}")

@webhooks.command("disable")
@click.argument("endpoint_id")
def webhooks_disable(endpoint_id: str) -> None:
    """Stop sending to an endpoint."""
    try:
        record = _webhooks_runtime().webhook_endpoints.set_enabled(endpoint_id, False)
    except KeyError:
        raise click.ClickException(f"no endpoint {endpoint_id}") from None
    _audited("endpoint.disable", endpoint_id, record)
    click.echo(_endpoint_line(record))

@webhooks.command("enable")
@click.argument("endpoint_id")
def webhooks_enable(endpoint_id: str) -> None:
    """Send to an endpoint again (replay what it missed with `replay --endpoint`)."""
    try:
        record = _webhooks_runtime().webhook_endpoints.set_enabled(endpoint_id, True)
    except KeyError:
        raise click.ClickException(f"no endpoint {endpoint_id}") from None
    _audited("endpoint.enable", endpoint_id, record)
    click.echo(_endpoint_line(record))

@webhooks.command("rotate")
@click.argument("endpoint_id")
@click.option("--secret", default=None, help="The new whsec_ secret (default: a new one, printed once).")
def webhooks_rotate(endpoint_id: str, secret: str | None) -> None:
    """A new secret; the old one still signs for VEXORA_WEBHOOK_ROTATION_GRACE seconds."""
    from worker.domain.errors import InvalidError
    try:
        record = _webhooks_runtime().webhook_endpoints.rotate(endpoint_id, secret)
    except KeyError:
        raise click.ClickException(f"no endpoint {endpoint_id}") from None
    except InvalidError as exc:
        raise failed(exc) from None
    _audited("endpoint.rotate", endpoint_id, record)
    click.echo(f"secret: {record['secrets'][0]['secret']}")

@webhooks.command("replay")
@click.option("--since", required=True, help="ISO-8601 time (or unix seconds): events from then.")
@click.option("--until", default=None, help="ISO-8601 time (or unix seconds): events until then.")
@click.option("--endpoint", default=None, help="Only this endpoint.")
@click.option("--all", "include_delivered", is_flag=True, help="Also events already delivered.")
@click.option("--account", default=None, help="Only this account's endpoints (default: every account's).")
def webhooks_replay(since: str, until: str | None, endpoint: str | None, include_delivered: bool,
                    account: str | None) -> None:
    """Deliver again the failed (or all) events of a window."""
    from worker.web.webhooks_api import parse_time_ms
    try:
        since_ms = parse_time_ms(since)
        until_ms = parse_time_ms(until) if until else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    try:
        count = _webhooks_runtime().webhook_dispatcher.replay(since_ms, until_ms, endpoint_id=endpoint,
                                                               include_delivered=include_delivered,
                                                               account=account)
    except KeyError:
        raise click.ClickException(f"no enabled endpoint {endpoint}") from None
    _audited("webhooks.replay", endpoint or "", account=account, since=since_ms, until=until_ms,
             all=include_delivered, scheduled=count)
    click.echo(f"{count} deliveries scheduled")

@webhooks.command("attempts")
@click.argument("trade_no")
def webhooks_attempts(trade_no: str) -> None:
    """Every delivery attempt of a job's events: time, endpoint, type, status, latency."""
    attempts = _webhooks_runtime().webhook_dispatcher.attempts(trade_no)
    for a in attempts:
        line = (f"{_utc(a['at'])}  {a['endpoint']}  {a['type']}  seq={a['sequence']}  attempt={a['attempt']}  "
                f"status={a['status']}  {a['latencyMs']} ms")
        if a.get("reason"):
            line += f"  ({a['reason']})"
        if a.get("nextAt"):
            line += f"  next retry {_utc(a['nextAt'])}"
        click.echo(line)
    if not attempts:
        click.echo(f"no delivery attempts recorded for {trade_no}")


def _utc(ms: int) -> str:
    import datetime as _dt
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@webhooks.command("listen")
@click.option("--forward-to", "forward_to", default=None, metavar="URL",
              help="POST each event, signed with the secret printed at the start, to this URL.")
@click.option("--account", default=None, help="Only this account's events (default: every account's).")
@click.option("--count", default=None, type=click.IntRange(1), help="Stop after this many events.")
def webhooks_listen(forward_to: str | None, account: str | None, count: int | None) -> None:
    """Print each webhook event as it happens; with --forward-to, deliver it to a local receiver.

    It reads the outbox (the events the senders deliver) from now on, beside the senders: it takes
    nothing from them and adds no endpoint. Each event forwarded is signed (Standard Webhooks)
    with a fresh whsec_ secret printed when it starts: give that secret to your receiver. Events
    are recorded only while at least one endpoint exists (`webhooks add`, or VEXORA_WEBHOOK_URL).
    Ctrl-C stops it.
    """
    import json
    import time

    import requests

    from worker.webhooks.outbox import build_body, event_account, webhook_id
    from worker.webhooks.signing import new_secret, signature_header

    dispatcher = _webhooks_runtime().webhook_dispatcher
    secret = new_secret()
    http = requests.Session()
    try:
        recording = dispatcher.recording()
        after = dispatcher.outbox_end()  # from now on: nothing after the secret is printed is missed
    except REDIS_DOWN as exc:
        raise click.ClickException(f"Redis unreachable: {exc}") from None
    click.echo(f"Ready. Signing secret: {secret}  (webhook-signature, Standard Webhooks)")
    click.echo(("forwarding to " + forward_to) if forward_to else "printing only (--forward-to URL delivers them)")
    if not recording:
        click.echo("note: no webhook endpoint exists, so no event is recorded: add one (`webhooks add`, "
                   "or VEXORA_WEBHOOK_URL)")
    click.echo("", nl=True)
    seen = 0
    try:
        while count is None or seen < count:
            try:
                rows = dispatcher.tail(after, block_ms=1000)
            except REDIS_DOWN as exc:
                raise click.ClickException(f"Redis unreachable: {exc}") from None
            for event_id, fields in rows:
                after = event_id
                if account and event_account(fields) != account:
                    continue
                body = build_body(fields)
                data = json.loads(body).get("data") or {}
                line = (f"{time.strftime('%H:%M:%S')}  {fields.get('type')}  tradeNo={data.get('tradeNo') or '-'}  "
                        f"state={data.get('state') or '-'}  account={event_account(fields)}")
                if forward_to:
                    line += "  -> " + _forward(http, forward_to, webhook_id(fields, event_id), body.encode(),
                                               secret, signature_header)
                click.echo(line)
                seen += 1
                if count is not None and seen >= count:
                    break
    except KeyboardInterrupt:
        pass


def _forward(http, url: str, msg_id: str, body: bytes, secret: str, signature_header) -> str:
    """POST one event signed with ``secret``; what came of it, in a few words."""
    import time

    import requests
    timestamp = int(time.time())
    headers = {"content-type": "application/json", "user-agent": "vexora-checkout-webhooks-listen",
               "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
               "webhook-signature": signature_header(msg_id, timestamp, body, [secret])}
    try:
        answer = http.post(url, data=body, headers=headers, timeout=10, allow_redirects=False)
    except requests.RequestException as exc:
        return f"not delivered ({type(exc).__name__})"
    return f"{answer.status_code}"

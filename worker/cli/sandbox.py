"""``vexora-checkout sandbox``: run the sandbox gateway, or act as one order's payer in it
(``sandbox trigger``, through the sandbox's control API at ``VEXORA_BASE_URL``)."""

from __future__ import annotations

import click

from worker.cli.main import main
from worker.config.settings import Settings

# the outcomes of ``worker.sandbox.cashier.TRIGGERS`` (the CLI imports no stand-in to show its help)
OUTCOMES = ("paid", "partial", "rest", "failed", "overpaid", "unknown-status", "lost-callback")


@main.group(invoke_without_command=True)
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
@click.pass_context
def sandbox(ctx: click.Context, host: str, port: int, public_url: str | None, time_factor: float,
            autopay: str | None, autopay_delay: float, ip_limits: bool) -> None:
    """Run the sandbox gateway (development and tests only; never for real money).

    \b
    vexora-checkout sandbox [--port 8900 ...]            run it
    vexora-checkout sandbox trigger TRADENO OUTCOME      act as one order's payer

    It knows the merchant of each account (VEXORA_ACCOUNTS_FILE, else VEXORA_MERCHANT_NO and
    VEXORA_APP_SECRET) and accepts requests signed with that merchant's secret, serves a cashier
    page at each payment link, and sends callbacks signed with the order's merchant's secret to
    each checkout's notifyUrl.
    """
    if ctx.invoked_subcommand is not None:
        return
    from worker import sandbox as sandbox_module
    from worker.sandbox.cashier import parse_mix

    settings = Settings.from_env()
    merchants = {a.merchant_no: a.app_secret for a in settings.accounts.values() if a.merchant_no and a.app_secret}
    if not merchants:
        raise click.UsageError("set VEXORA_MERCHANT_NO and VEXORA_APP_SECRET (or VEXORA_ACCOUNTS_FILE) for the sandbox")
    try:
        mix = parse_mix(autopay) if autopay else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--autopay") from None
    sandbox_module.run(host, port, merchants=merchants,
                       public_url=public_url, time_factor=time_factor, ip_limits=ip_limits,
                       autopay={"mix": mix, "delay": autopay_delay} if mix else None)


@sandbox.command("trigger")
@click.argument("trade_no")
@click.argument("outcome", type=click.Choice(OUTCOMES))
def sandbox_trigger(trade_no: str, outcome: str) -> None:
    """Do OUTCOME to order TRADENO as its payer would, in the sandbox at VEXORA_BASE_URL.

    \b
    paid            pay the full amount (callback 0000)
    partial         pay half (0001); then `rest` or `failed`
    rest            pay the rest after a partial payment (0000)
    failed          the payment fails (00029)
    overpaid        pay the amount + 100 yen (0000)
    unknown-status  the gateway reports 00032 "unknown error" (a query settles it)
    lost-callback   pay in full, but the callback is lost: only a query finds it
    """
    import requests

    settings = Settings.from_env()
    if not settings.base_url:
        raise click.ClickException("VEXORA_BASE_URL is not set: it must point at the sandbox gateway")
    if not settings.sandbox:
        raise click.ClickException("sandbox trigger drives the sandbox only: set VEXORA_ENV=sandbox "
                                   "with VEXORA_BASE_URL pointing at a sandbox gateway")
    url = f"{settings.base_url.rstrip('/')}/_sandbox/orders/{requests.utils.quote(trade_no, safe='')}/trigger"
    try:
        answer = requests.post(url, json={"outcome": outcome}, timeout=10)
    except requests.RequestException as exc:
        raise click.ClickException(f"the sandbox at {settings.base_url} is unreachable: "
                                   f"{type(exc).__name__}") from None
    try:
        body = answer.json()
    except ValueError:
        body = {}
    if answer.status_code == 404:
        raise click.ClickException(f"the sandbox has no order {trade_no} (is VEXORA_BASE_URL the sandbox "
                                   "the job was sent to?)")
    if answer.status_code != 200:
        raise click.ClickException(body.get("error") or f"the sandbox answered {answer.status_code}")
    order = body["order"]
    paid = f" paid {order['paidAmount']}" if order.get("paidAmount") else ""
    lost = " (callback lost: only a query finds it)" if outcome == "lost-callback" else ""
    click.echo(f"{trade_no}: {outcome} -> status {order['status']} {order['message']}{paid}{lost}")

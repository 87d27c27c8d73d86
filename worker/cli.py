"""The ``vexora-checkout`` command line.

Settings come from the environment (``worker.settings``); options given here override them.
"""

from __future__ import annotations

import json
import sys

import click

from worker.settings import Settings

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Vexora checkout worker: enqueue checkouts, follow them, run the services."""


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
    from worker.sandbox_cashier import parse_mix

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
@click.argument("trade_no")
def status(trade_no: str) -> None:
    """Print the record of one job (payer data masked) as JSON; exit 1 if there is none."""
    from worker.client import get_checkout

    record = get_checkout(trade_no)
    if record is None:
        click.echo(f"no job with tradeNo {trade_no}", err=True)
        sys.exit(1)
    click.echo(json.dumps(record, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()

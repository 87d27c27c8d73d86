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
def sandbox(host: str, port: int, public_url: str | None) -> None:
    """Run the sandbox gateway (development and tests only; never for real money).

    It accepts requests signed with VEXORA_MERCHANT_NO and VEXORA_APP_SECRET.
    """
    from worker import sandbox as sandbox_module

    settings = Settings.from_env()
    if not settings.merchant_no or not settings.app_secret:
        raise click.UsageError("set VEXORA_MERCHANT_NO and VEXORA_APP_SECRET for the sandbox")
    sandbox_module.run(host, port, merchant_no=settings.merchant_no, app_secret=settings.app_secret,
                       public_url=public_url)


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

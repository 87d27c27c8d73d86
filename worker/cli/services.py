"""Commands that run the processes: ``worker``, ``beat``, ``web``, ``sandbox``, and ``demo`` (all of them).

Each execs (or runs) the real program; the imports of what they start happen in the command, so
that ``vexora-checkout --help`` stays fast."""

from __future__ import annotations

import os
import sys

import click

from worker.cli.main import main
from worker.config.settings import Settings
from worker.web.serve import GunicornConfNotFound, web_argv


@main.command()
@click.option("--serve", is_flag=True, help="Keep everything running after the batch; Ctrl-C stops it.")
@click.option("--size", default=50, show_default=True, type=click.IntRange(15, 2000), help="Jobs in the batch.")
@click.option("--timeout", default=180.0, show_default=True, type=float, help="Seconds to wait for the batch.")
@click.option("--seed", default=None, type=int, help="Seed for the batch's random parts.")
def demo(serve: bool, size: int, timeout: float, seed: int | None) -> None:
    """The whole life of a batch of checkouts on this machine.

    Starts a private Redis (unless REDIS_URL is set), the sandbox gateway, the web app, a worker,
    beat and Flower (when installed); enqueues the batch; a payer bot clicks the cashier pages;
    shows live progress and a summary. Exits 0 when every job ended as planned.
    """
    from worker.local.demo import run_demo

    sys.exit(run_demo(size=size, serve=serve, timeout=timeout, seed=seed))

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

    It knows the merchant of each account (VEXORA_ACCOUNTS_FILE, else VEXORA_MERCHANT_NO and
    VEXORA_APP_SECRET) and accepts requests signed with that merchant's secret, serves a cashier
    page at each payment link, and sends callbacks signed with the order's merchant's secret to
    each checkout's notifyUrl.
    """
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

@main.command()
@click.option("--bind", default=None, help="Address for gunicorn  [default: 0.0.0.0:$PORT when PORT is set, "
                                           "else 127.0.0.1:8000]")
@click.option("--workers", default=None, type=int, help="gunicorn worker processes  [default: "
                                                        "$WEB_CONCURRENCY, else 2]")
@click.option("--threads", default=None, type=int, help="Threads per worker process  [default: "
                                                        "$GUNICORN_THREADS, else 8]")
def web(bind: str | None, workers: int | None, threads: int | None) -> None:
    """Run the web app under gunicorn, with gunicorn.conf.py: callbacks, the producer API, health."""
    given = {"--bind": bind, "--workers": workers, "--threads": threads}
    try:
        argv = web_argv(*(part for flag, value in given.items() if value is not None for part in (flag, str(value))))
    except GunicornConfNotFound as exc:
        raise click.ClickException(str(exc)) from None
    _exec(*argv)

@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--concurrency", "-c", type=int, help="Threads in this worker [default: 16; 8 with --webhooks].")
@click.option("--webhooks", "webhooks_only", is_flag=True,
              help="Be a webhook worker: the `webhooks` queue only (run one beside the checkout workers).")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(concurrency: int | None, webhooks_only: bool, celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker on the checkout, callbacks and reconcile queues, or with --webhooks on
    the webhooks queue (extra arguments go to celery)."""
    if webhooks_only:
        queues, threads = ["-Q", "webhooks", "-n", "webhooks@%h"], concurrency or 8
    else:
        queues, threads = ["-Q", "checkout,callbacks,reconcile"], concurrency or 16
    _exec("-m", "celery", "-A", "worker", "worker", *queues, "--pool", "threads",
          "--concurrency", str(threads), "--loglevel", "INFO", *celery_args)

@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def beat(celery_args: tuple[str, ...]) -> None:
    """Run Celery beat, which schedules the reconciler. Run exactly one."""
    # --quiet: no banner printed between the log lines ("beat: Starting..." is logged anyway)
    _exec("-m", "celery", "-A", "worker", "--quiet", "beat", "--loglevel", "INFO", *celery_args)

def _exec(*args: str) -> None:
    os.execv(sys.executable, [sys.executable, *args])

"""Commands that run the processes: ``worker``, ``beat``, ``web``, and ``demo`` (all of them; ``sandbox`` is in
``worker.cli.sandbox``).

Each execs (or runs) the real program; the imports of what they start happen in the command, so
that ``vexora-checkout --help`` stays fast."""

from __future__ import annotations

import os
import sys

import click

from worker.cli.main import main
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
    shows live progress and a summary. Exits 0 when every job ended as planned. With --serve it
    also writes an env file to `source` (every command then works against the demo; its path, the
    /ops URL and a login are printed; docs/first-hour.md).
    """
    from worker.local.demo import run_demo

    sys.exit(run_demo(size=size, serve=serve, timeout=timeout, seed=seed))

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

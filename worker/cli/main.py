"""The ``vexora-checkout`` group: the settings checked before any command, the log set up, the
exit codes every command shares. The commands are in the modules beside this one, by group."""

from __future__ import annotations

import logging

import click
import redis

from worker import __version__
from worker.config.settings import Settings
from worker.config.startup import refuse
from worker.domain.errors import ConfigurationError

__all__ = ["main", "EXIT_FAILED", "EXIT_INVALID", "EXIT_NOT_PAYING", "REDIS_DOWN", "problem_lines", "failed",
           "shell_principal", "utc_text"]

EXIT_FAILED, EXIT_INVALID, EXIT_NOT_PAYING = 1, 3, 4
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
# Commands that serve log at INFO (their log is what they show); the others warnings and errors
# only, so that their own output (a progress bar, tradeNos, JSON) is not buried under a line a job.
_SERVING = {"sandbox"}


def shell_principal():
    """Who runs the CLI: the shell user, trusted like the shell (the CLI reaches Redis directly);
    recorded as ``cli:<user>`` (``resolvedBy``, the audit log)."""
    import getpass

    from worker.domain.access import ADMIN, ALL_ACCOUNTS, SCOPES, Principal
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = "unknown"
    return Principal("cli", user, ALL_ACCOUNTS, frozenset(SCOPES) | {ADMIN}, "admin")


def utc_text(ms: object) -> str:
    """Epoch milliseconds as ``YYYY-MM-DDTHH:MM:SSZ``; "" for none."""
    if not ms:
        return ""
    from datetime import datetime, timezone
    return datetime.fromtimestamp(int(ms) / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _flatten(errors, path: str = ""):
    """(field path, message) for each message of a marshmallow-style errors value."""
    if isinstance(errors, dict):
        for key, value in errors.items():
            yield from _flatten(value, f"{path}.{key}" if path else str(key))
    elif isinstance(errors, (list, tuple)):
        for value in errors:
            yield from _flatten(value, path)
    else:
        yield path, str(errors)


def problem_lines(exc) -> str:
    """An error for a person: its message, then one plain ``field: problem`` line per problem
    (never a dict's repr)."""
    message = getattr(exc, "message", None) or str(exc)
    lines = [f"{path}: {text}" if path else text for path, text in _flatten(getattr(exc, "errors", None) or {})]
    return "\n".join([message, *lines])


def failed(exc) -> click.ClickException:
    """``raise failed(exc) from None``: the command ends with ``problem_lines(exc)``, status 1."""
    return click.ClickException(problem_lines(exc))


class _Checked(click.Group):
    """The settings are checked once the command is known, before it runs; a bad setting found
    then or later ends the command with its lines and status 2, never a traceback."""

    def resolve_command(self, ctx, args):
        name, command, rest = super().resolve_command(ctx, args)
        wants_help = any(arg in ctx.help_option_names for arg in rest)
        if name != "demo" and not wants_help and not ctx.resilient_parsing:
            Settings.from_env()
        return name, command, rest

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfigurationError as exc:
            refuse(exc)

@click.group(cls=_Checked, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
# the version given, not looked up in the installed metadata by click: the same under `python -m`
@click.version_option(__version__, "-V", "--version", prog_name="vexora-checkout")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Vexora checkout worker: enqueue checkouts, follow them, run the services.

    \b
    Start here:    vexora-checkout demo            (everything on this machine, ~50 checkouts)
    Enqueue:       vexora-checkout enqueue jobs.csv --wait
    Follow a job:  vexora-checkout status TRADENO --watch
    Review queue:  vexora-checkout review [query | resolve] ...
    Dead letters:  vexora-checkout dead-letters [--requeue]    (RabbitMQ broker only)
    Webhooks:      vexora-checkout webhooks [list | add | disable | enable | rotate | replay | attempts | listen]
    Sandbox payer: vexora-checkout sandbox trigger TRADENO paid|partial|rest|failed|overpaid|...
    Run:           vexora-checkout worker [--webhooks] | beat | web | sandbox

    Configuration is by environment: REDIS_URL, VEXORA_BASE_URL, VEXORA_MERCHANT_NO,
    VEXORA_APP_SECRET (or VEXORA_APP_SECRET_FILE), VEXORA_NOTIFY_URL, VEXORA_API_TOKEN; every
    variable is checked before a command runs (bad settings: their lines, exit 2).
    Logs: one line an event on stderr, logfmt (VEXORA_LOG_FORMAT=json for JSON).
    """
    from worker import logs
    from worker.domain.errors import ConfigurationError

    try:
        fmt = Settings.from_env().log_format
    except ConfigurationError:
        fmt = "logfmt"  # the command that needs the settings says what is wrong with them
    logs.configure(fmt, logging.INFO if ctx.invoked_subcommand in _SERVING else logging.WARNING)

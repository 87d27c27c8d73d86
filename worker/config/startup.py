"""How a process stops when its settings are wrong: the ``VAR: problem`` lines on stderr, no
traceback, whichever way it was started — the ``vexora-checkout`` command, ``celery -A worker``
(worker, beat, Flower) or ``gunicorn worker.web:app``.

The Celery app and the web app are built when their modules are imported, so that is where a
bad setting shows first. Imported by any other program (a producer, a test), the
``ConfigurationError`` is raised to it as usual: a library must not end its caller's process.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from worker.domain.errors import ConfigurationError

__all__ = ["EXIT_BAD_SETTINGS", "describe", "refuse", "at_import", "settings_or_exit"]

EXIT_BAD_SETTINGS = 2  # the CLI's "bad usage", as click's own usage errors
T = TypeVar("T")


def describe(exc: ConfigurationError) -> str:
    return f"vexora-checkout cannot start: {exc.message}"


def refuse(exc: ConfigurationError) -> NoReturn:
    """Print what is wrong and exit 2."""
    print(describe(exc), file=sys.stderr, flush=True)
    raise SystemExit(EXIT_BAD_SETTINGS)


def settings_or_exit():
    """The settings from the environment, or exit 2 with their lines: for a program's own start,
    e.g. gunicorn.conf.py, which gunicorn's arbiter reads before it forks any worker (an
    exception there would be printed with a traceback; SystemExit is not)."""
    from worker.config.settings import Settings

    try:
        return Settings.from_env()
    except ConfigurationError as exc:
        refuse(exc)


def at_import(build: Callable[[], T]) -> T:
    """``build()``, for a module-level app; under celery or gunicorn a ``ConfigurationError``
    from it ends the process with the lines alone."""
    try:
        return build()
    except ConfigurationError as exc:
        server = _server()
        if server == "gunicorn":
            from gunicorn.errors import AppImportError

            # In a gunicorn worker, AppImportError is printed without a traceback and makes the
            # arbiter stop ("App failed to load", status 4); a worker exiting any other way is
            # replaced by a new one, which would fail the same way, forever. Only a fallback:
            # with several workers gunicorn 27 may print a traceback of its own when a second one
            # fails while it halts, so gunicorn.conf.py checks first (``settings_or_exit``).
            raise AppImportError(describe(exc)) from None
        if server == "celery":
            # SystemExit goes through celery's `except Exception`, which would print the error
            # as "Unable to load celery application" with a traceback
            refuse(exc)
        raise


# the youngest generation is collected after this many allocations (Python's default: 700)
GC_YOUNG_THRESHOLD = 20_000


def fewer_collections() -> None:
    """Once a long-running process is set up (a worker, a gunicorn worker): what it has built
    (modules, settings, clients, Celery's and Flask's objects) is moved out of the collector's
    way (``gc.freeze``) and the youngest generation is collected 30 times less often. Every job
    allocates thousands of short-lived objects; with Python's defaults the cyclic collector ran
    every few jobs and walked everything still alive: about a twentieth of a worker's CPU per job
    (BENCHMARKS.md §1). Reference counting still frees nearly all of them at once; only cycles
    wait longer (a few MiB at most)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)


def _server() -> str | None:
    """The program importing us when it is a server we are run under, by its modules: gunicorn's
    arbiter is in every gunicorn process (workers are its forks), celery's command module in
    every process started by the ``celery`` command. A program that merely uses the package
    (``worker.web.bodies`` imports gunicorn's HTTP parser errors) has neither."""
    if "gunicorn.arbiter" in sys.modules:
        return "gunicorn"
    if "celery.bin.celery" in sys.modules:
        return "celery"
    return None

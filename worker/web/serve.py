"""How the web app is started: gunicorn with ``gunicorn.conf.py`` (``vexora-checkout web``, the
demo, the tests and the benchmarks all start it this way)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["web_argv", "gunicorn_conf", "GunicornConfNotFound"]


class GunicornConfNotFound(FileNotFoundError):
    """Neither the repository nor the working directory has ``gunicorn.conf.py``."""


def gunicorn_conf() -> Path:
    """gunicorn.conf.py: the repository's (next to this package), else the working directory's
    (the Docker image's /app) — where gunicorn itself would look."""
    for candidate in (Path(__file__).resolve().parents[2] / "gunicorn.conf.py", Path.cwd() / "gunicorn.conf.py"):
        if candidate.is_file():
            return candidate
    raise GunicornConfNotFound("gunicorn.conf.py not found: run from the repository, or give gunicorn "
                               "-c with its path")


def web_argv(*flags: str) -> list[str]:
    """``-m gunicorn worker.web:app -c <gunicorn.conf.py> FLAGS``, for a Python interpreter; the
    flags win over the file (the tests and the demo bind a port of their own)."""
    return ["-m", "gunicorn", "worker.web:app", "-c", str(gunicorn_conf()), *flags]

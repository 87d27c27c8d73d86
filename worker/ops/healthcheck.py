"""Container health checks (Dockerfile ``HEALTHCHECK``, docker-compose.yml ``healthcheck``).

    python -m worker.ops.healthcheck http URL [--timeout S]        # web /healthz, Flower /healthcheck, sandbox
    python -m worker.ops.healthcheck beat SCHEDULE [--max-age S]   # celery beat's schedule file is fresh

Exit status 0: healthy, 1: unhealthy (Docker's meanings), with one line saying why. Workers are
checked with Celery's own ``celery -A worker inspect ping -d <node name>`` instead (see
docker-compose.yml). Standard library only, so a check costs a few milliseconds of start-up.

Beat: while it sends tasks (the webhook dispatcher every second) beat writes its schedule file at
least every 3 minutes (Celery's ``sync_every``), so a file not written for ``--max-age`` (7
minutes) means a beat that is stuck or gone. The file may carry a suffix, depending on the
``dbm`` module behind Celery's shelve (``.db``, ``.dat``, ``.dir``...): the newest one counts.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.error
import urllib.request

__all__ = ["check_http", "check_beat", "main"]

BEAT_MAX_AGE = 420.0  # seconds: two of Celery beat's 3-minute syncs, and a minute to spare
_SUFFIXES = ("", ".db", ".dat", ".bak", ".dir")  # celery.beat.PersistentScheduler.known_suffixes


def check_http(url: str, timeout: float = 3.0) -> tuple[bool, str]:
    """Healthy when ``url`` answers 2xx within ``timeout`` (redirects are not followed)."""
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, method="GET"), timeout=timeout) as answer:
            return 200 <= answer.status < 300, f"{url}: HTTP {answer.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url}: HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{url}: {getattr(exc, 'reason', exc)}"


def check_beat(schedule: str, max_age: float = BEAT_MAX_AGE, now: float | None = None) -> tuple[bool, str]:
    """Healthy when beat's schedule file (any of its suffixes) was written within ``max_age`` s."""
    times = []
    for suffix in _SUFFIXES:
        try:
            times.append(os.stat(schedule + suffix).st_mtime)
        except OSError:
            continue
    if not times:
        return False, f"{schedule}: no schedule file"
    age = (time.time() if now is None else now) - max(times)
    return age <= max_age, f"{schedule}: written {age:.0f} s ago (at most {max_age:.0f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.ops.healthcheck", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="check", required=True)
    http = sub.add_parser("http", help="a URL answers 2xx")
    http.add_argument("url")
    http.add_argument("--timeout", type=float, default=3.0)
    beat = sub.add_parser("beat", help="celery beat's schedule file is fresh")
    beat.add_argument("schedule")
    beat.add_argument("--max-age", type=float, default=BEAT_MAX_AGE)
    args = parser.parse_args(argv)
    if args.check == "http":
        healthy, why = check_http(args.url, args.timeout)
    else:
        healthy, why = check_beat(args.schedule, args.max_age)
    print(("healthy: " if healthy else "unhealthy: ") + why)
    return 0 if healthy else 1


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


if __name__ == "__main__":
    sys.exit(main())

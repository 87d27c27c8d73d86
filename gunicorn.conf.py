"""gunicorn's settings for the web app, in one place: ``gunicorn worker.web:app -c gunicorn.conf.py``.

The Procfile, docker-compose.yml, the Dockerfile, ``vexora-checkout web``, the demo, the tests and
the benchmarks all start the web with this file (by its path: it is found from any directory).
Anything given on gunicorn's command line wins over it (e.g. ``--bind``, ``--workers``).

The variables read here are the process manager's (PORT, WEB_CONCURRENCY) and this file's own
(GUNICORN_THREADS); the app's settings come from worker.config.settings as everywhere else.
"""

import os

from gunicorn.glogging import Logger

from worker import logs
from worker.config.startup import fewer_collections, settings_or_exit

# PORT set (honcho, Heroku-style platforms, the Docker image): every interface; else local only
bind = [f"0.0.0.0:{os.environ['PORT']}"] if os.environ.get("PORT") else ["127.0.0.1:8000"]

# 2 processes x 8 threads unless told otherwise (docs/design.md §Processes); WEB_CONCURRENCY is
# gunicorn's own variable for the number of processes, still honoured.
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY") or 2)
threads = int(os.environ.get("GUNICORN_THREADS") or 8)

# No control socket (gunicorn >= 25 opens one by default at one path per user): several gunicorns
# run side by side for one user (the tests, the demo, the benchmarks) and would contend for it.
control_socket_disable = True

# gunicorn would believe X-Forwarded-Proto from 127.0.0.1 on its own; which proxies are believed is
# VEXORA_TRUSTED_PROXIES's call alone (werkzeug's ProxyFix in worker/web/wsgi.py)
forwarded_allow_ips = ""

# One event per line, logfmt or JSON (VEXORA_LOG_FORMAT): gunicorn's error and access logs and the
# app's own lines (INFO), through worker.logs. An access line is on by this alone.
# Bad settings end gunicorn here, in the arbiter, before any worker is forked: their lines, exit 2.
logconfig_dict = logs.gunicorn_logconfig(settings_or_exit().log_format)


class AccessLog(Logger):
    """gunicorn's logger, without the access line of a gateway callback answered ``OK``: at
    thousands a second it was a tenth of the web's CPU per callback (BENCHMARKS.md §4), and it
    says nothing the counter ``vexora_callbacks_total{result="accepted"}`` and the job's own
    ``state_change`` line do not. Every other answer of ``/vexora/notify`` (401, 400, 403, 413,
    503), and every other request, keeps its line."""

    def access(self, resp, req, environ, request_time):
        # gunicorn's own error answers (a bad Content-Length) come with a response that has
        # ``status`` only: no status_code yet
        if getattr(resp, "status_code", None) == 200 and getattr(req, "path", None) == "/vexora/notify":
            return
        super().access(resp, req, environ, request_time)


logger_class = AccessLog


def post_worker_init(worker):
    """A gunicorn worker is set up (the app loaded): the garbage collector leaves what it built
    alone, and collects the young generation less often (worker/config/startup.py)."""
    fewer_collections()

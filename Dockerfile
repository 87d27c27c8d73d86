# One image for every process: worker, beat, web, flower and the (dev-only) sandbox.
# The command comes from docker-compose.yml (or `docker run ... celery -A worker worker ...`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000

# tini is PID 1 (ENTRYPOINT below): it reaps orphaned children and passes SIGTERM on, so a
# `docker stop` gives Celery its warm shutdown; and the user every process runs as
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --uid 10001 --user-group vexora

WORKDIR /app

# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when pyproject.toml
# changes, not on every code change. Its build requirements too, so the package below builds
# without fetching anything.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb')); \
print('\n'.join(p['build-system']['requires'] + p['project']['dependencies'] + p['project']['optional-dependencies']['flower']))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the code, installed without dependencies (they are in the layer above)
COPY README.md ./
COPY worker ./worker
COPY schemas ./schemas
COPY gunicorn.conf.py ./
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && rm -rf build ./*.egg-info

# never root at run time; configuration (and the app secret) comes from the environment only
USER vexora

EXPOSE 8000 5555 8900

ENTRYPOINT ["tini", "--"]

# The default command's health (the web app); docker-compose.yml sets each service's own check
# (workers: `celery inspect ping`, beat: its schedule file, Flower: /healthcheck). Another
# command run from this image needs its own --health-cmd, or --no-healthcheck.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -m worker.ops.healthcheck http "http://127.0.0.1:${PORT:-8000}/healthz"

# gunicorn.conf.py binds 0.0.0.0:$PORT (8000 above; a platform may set its own)
CMD ["gunicorn", "worker.web:app", "-c", "/app/gunicorn.conf.py"]

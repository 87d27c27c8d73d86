# One image for every process: worker, beat, web, flower and the (dev-only) sandbox.
# The command comes from docker-compose.yml (or `docker run ... celery -A worker worker ...`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000

WORKDIR /app

COPY pyproject.toml README.md ./
COPY worker ./worker
COPY schemas ./schemas
COPY gunicorn.conf.py ./
RUN pip install --no-cache-dir '.[flower]' \
    && rm -rf build ./*.egg-info \
    && useradd --system --create-home --uid 10001 --user-group vexora

# never root at run time; configuration (and the app secret) comes from the environment only
USER vexora

EXPOSE 8000 5555 8900

# gunicorn.conf.py binds 0.0.0.0:$PORT (8000 above; a platform may set its own)
CMD ["gunicorn", "worker.web:app", "-c", "/app/gunicorn.conf.py"]

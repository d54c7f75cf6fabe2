# syntax=docker/dockerfile:1
# The shop image: gunicorn, Celery workers and beat all run from it (see ops/entrypoint.sh).
# python:3.11-slim-bookworm is the Python the tests run on.

# --- build: the dependencies in a virtualenv, copied whole into the runtime stage ----------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.txt /tmp/requirements.txt
# Every pinned dependency ships manylinux wheels (psycopg[binary], pillow): no compiler needed.
# Compiled to .pyc here: at run time the file system may be read-only.
RUN pip install -r /tmp/requirements.txt

# --- runtime ------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS runtime

# pg_dump/pg_restore must be of the same major version as the server (postgres:17 in
# docker-compose.yml): Debian bookworm has only 15, so they come from the PostgreSQL (PGDG) apt
# repository, signed by its key.
ARG PG_MAJOR=17
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl; \
    install -d /usr/share/postgresql-common/pgdg; \
    curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
        https://www.postgresql.org/media/keys/ACCC4CF8.asc; \
    echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt bookworm-pgdg main" \
        > /etc/apt/sources.list.d/pgdg.list; \
    apt-get update; \
    apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}"; \
    apt-get purge -y --auto-remove curl; \
    rm -rf /var/lib/apt/lists/*; \
    pg_dump --version | grep -q " ${PG_MAJOR}\."

# The user the processes run as. Its ids match the owner of the bind-mounted data directories
# on the host (`make init` writes APP_UID/APP_GID to .env), so uploads and logs are writable.
ARG APP_UID=10001
ARG APP_GID=10001
RUN groupadd --system --gid "${APP_GID}" shop \
    && useradd --system --uid "${APP_UID}" --gid shop --home-dir /app --no-create-home shop

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_READ_DOT_ENV=false \
    MEDIA_ROOT=/app/data/uploads \
    LOG_DIR=/app/data/logs \
    STATIC_ROOT=/app/static \
    BACKUP_PATH=/backups \
    CELERY_BEAT_SCHEDULE_FILE=/app/data/beat/celerybeat-schedule \
    GUNICORN_CONTROL_SOCKET=/tmp/gunicorn.ctl

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The code belongs to root: the shop's user can read it, not change it.
COPY . /app
RUN python -m compileall -q shop ops

# Collected at build time: the frontend_build volume is filled from the image the first time,
# and the migrate service refreshes it on every deploy.
RUN install -d -o shop -g shop /app/data /app/data/uploads /app/data/logs /app/data/beat /app/static /backups
USER shop
RUN python manage.py collectstatic --noinput --verbosity 0

EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["python", "ops/healthcheck.py"]
ENTRYPOINT ["/app/ops/entrypoint.sh"]
CMD ["web"]

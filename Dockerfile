# The shop image: gunicorn, Celery workers and beat all run from it (see ops/entrypoint.sh).
# Built from the base image and Debian's own archive only (no Docker Hub frontend, no
# third-party apt repository): python:3.13-slim-trixie is Debian trixie, whose main archive has
# postgresql-client-17, the same major version as the database image (postgres:17-trixie), and
# Python 3.13 is the Python of CI and of the Docker-less runner (README "Python version").

# --- build: the dependencies in a virtualenv, copied whole into the runtime stage ----------------
FROM python:3.13-slim-trixie AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.txt /tmp/requirements.txt
# Every pinned dependency ships manylinux wheels (psycopg[binary], pillow): no compiler needed.
# Compiled to .pyc here: at run time the file system may be read-only.
RUN pip install -r /tmp/requirements.txt

# --- runtime ------------------------------------------------------------------------------------
FROM python:3.13-slim-trixie AS runtime

# pg_dump/pg_restore of the same major version as the server (docker-compose.yml), and
# pgBackRest (the repository host of point-in-time recovery: the backup worker and the
# pgbackrest-repo service), both from Debian's main archive.
ARG PG_MAJOR=17
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}" pgbackrest; \
    rm -rf /var/lib/apt/lists/*; \
    pg_dump --version | grep -q " ${PG_MAJOR}\."; \
    pgbackrest version

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
    CELERY_BEAT_SCHEDULE_FILE=/var/lib/shop-beat/celerybeat-schedule \
    GUNICORN_CONTROL_SOCKET=/tmp/gunicorn.ctl

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The code belongs to root: the shop's user can read it, not change it.
COPY . /app
RUN python -m compileall -q shop ops

# Collected at build time: the frontend_build volume is filled from the image the first time,
# and the migrate service refreshes it on every deploy.
# beat's schedule lives outside /app: in development the source is mounted on /app, and a volume
# mounted below it would make Docker create a root-owned directory in the checkout.
# /backups 0750: Docker gives a new volume the mode of the directory it is mounted on.
RUN install -d -o shop -g shop /app/data /app/data/uploads /app/data/logs /app/static /var/lib/shop-beat \
    && install -d -o shop -g shop -m 0750 /backups
USER shop
# Production settings refuse a weak secret key, and the image must hold none: a throwaway one
# for this step only.
RUN DJANGO_SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
    python manage.py collectstatic --noinput --verbosity 0

EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["python", "ops/healthcheck.py"]
ENTRYPOINT ["/app/ops/entrypoint.sh"]
CMD ["web"]

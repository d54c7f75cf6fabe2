#!/bin/sh
# One entry point for every process of the shop: the image's ENTRYPOINT and the commands of
# the Docker-less runner's supervisord, so both start the same things the same way.
#   migrate        apply migrations, then refresh the collected static files (one-shot)
#   web            gunicorn (ops/gunicorn.conf.py)
#   dev            runserver with auto-reload (docker-compose.override.yml)
#   worker         Celery worker for every queue but the backups one
#   backup-worker  Celery worker for the backups queue only, one task at a time
#   beat           Celery beat; its schedule file in CELERY_BEAT_SCHEDULE_FILE
#   pgbackrest-repo pgBackRest's TLS server on the repository host (compose: the database's
#                  archive-push lands in repo1 on the backup volume through it)
#   anything else  run as given (e.g. `docker compose run --rm backend python manage.py shell`)
set -eu
cd "$(dirname "$0")/.."

role="${1:-web}"
log_level="${LOG_LEVEL:-INFO}"
# The backup role is for the backup worker and for backup/restore commands run by hand (the
# backend container has it for `docker compose exec backend python manage.py restore_backup`):
# the shop's own processes never hold it.
case "$role" in
    migrate|web|dev|worker|beat) unset BACKUP_DATABASE_URL ;;
esac
unset RUNNER_BACKUP_DATABASE_URL  # the Docker-less runner's hand-over to the backup worker
# Compose: the pgBackRest configuration of the repository host (pgbackrest-repo and backup), the
# shop's own (shop/backups/pitr/config.py, from the settings) followed by the compose topology
# (PITR_COMPOSE_REPO_HOST_CONF: database/pgbackrest/repo-host.conf, TLS to the database side).
pitr_enabled() {
    case "$(printf '%s' "${PITR_ENABLED:-false}" | tr '[:upper:]' '[:lower:]')" in
        1 | true | yes | on | y) return 0 ;;
        *) return 1 ;;
    esac
}

write_pgbackrest_config() {
    [ -n "${PITR_COMPOSE_REPO_HOST_CONF:-}" ] || return 0
    config="${PITR_PGBACKREST_CONFIG:?PITR_PGBACKREST_CONFIG is not set}"
    mkdir -p "$(dirname "$config")" "${PITR_RUN_DIR:-/tmp/pgbackrest}/lock" "${PITR_RUN_DIR:-/tmp/pgbackrest}/spool" \
        "${PITR_LOG_DIR:-/tmp/pgbackrest/log}"
    s3_bucket="${BACKUP_S3_BUCKET:-}" s3_endpoint="${BACKUP_S3_ENDPOINT_URL:-}"
    case "${BACKUP_S3_ENDPOINT_URL:-}" in
        http://*)
            # pgBackRest reaches S3 over HTTPS only (the development MinIO is plain HTTP).
            echo "entrypoint: pgBackRest repo2 (S3) left out: BACKUP_S3_ENDPOINT_URL is not https://" >&2
            s3_bucket="" s3_endpoint=""
            ;;
    esac
    # It holds the S3 keys when repo2 is on: private, and complete or not there at all.
    (umask 077 && { BACKUP_S3_BUCKET="$s3_bucket" BACKUP_S3_ENDPOINT_URL="$s3_endpoint" python -m shop.backups.pitr.config \
        && cat "$PITR_COMPOSE_REPO_HOST_CONF"; } > "$config.tmp") && mv "$config.tmp" "$config"
}

case "$role" in
    migrate)
        python manage.py migrate --noinput
        exec python manage.py collectstatic --noinput --verbosity 0
        ;;
    web)
        exec gunicorn --config ops/gunicorn.conf.py shop.wsgi:application
        ;;
    dev)
        exec python manage.py runserver "${DEV_SERVER_BIND:-0.0.0.0:8000}"
        ;;
    worker)
        exec celery -A shop worker --queues default --hostname "worker@%h" --loglevel "$log_level"
        ;;
    backup-worker)
        if [ -n "${PITR_COMPOSE_REPO_HOST_CONF:-}" ] && pitr_enabled && write_pgbackrest_config; then
            # The stanza once (a no-op when it exists and matches the cluster): until it exists,
            # archive-push fails and WAL waits in pg_wal (alerted), the shop keeps working.
            pgbackrest --config="$PITR_PGBACKREST_CONFIG" --stanza=shop stanza-create \
                || echo "entrypoint: pgbackrest stanza-create failed (see above); archiving waits for it" >&2
        fi
        exec celery -A shop worker --queues backups --concurrency 1 --hostname "backup@%h" \
            --loglevel "$log_level"
        ;;
    beat)
        exec celery -A shop beat --schedule "${CELERY_BEAT_SCHEDULE_FILE:-celerybeat-schedule}" \
            --loglevel "$log_level"
        ;;
    pgbackrest-repo)
        write_pgbackrest_config
        exec pgbackrest --config="$PITR_PGBACKREST_CONFIG" server
        ;;
    *)
        exec "$@"
        ;;
esac

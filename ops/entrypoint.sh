#!/bin/sh
# One entry point for every process of the shop: the image's ENTRYPOINT and the commands of
# the Docker-less runner's supervisord, so both start the same things the same way.
#   migrate        apply migrations, then refresh the collected static files (one-shot)
#   web            gunicorn (ops/gunicorn.conf.py)
#   dev            runserver with auto-reload (docker-compose.override.yml)
#   worker         Celery worker for every queue but the backups one
#   backup-worker  Celery worker for the backups queue only, one task at a time
#   beat           Celery beat; its schedule file in CELERY_BEAT_SCHEDULE_FILE
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
        exec celery -A shop worker --queues backups --concurrency 1 --hostname "backup@%h" \
            --loglevel "$log_level"
        ;;
    beat)
        exec celery -A shop beat --schedule "${CELERY_BEAT_SCHEDULE_FILE:-celerybeat-schedule}" \
            --loglevel "$log_level"
        ;;
    *)
        exec "$@"
        ;;
esac

#!/usr/bin/env bash
# Entry point of the shop's database image (database/Dockerfile), in front of the postgres
# image's own (docker-entrypoint.sh, which runs the server as the postgres user):
#   postgres ...        the database; with PITR_ENABLED=true WAL archiving is switched on
#                       (archive_mode, archive_command = pgBackRest's archive-push to the
#                       repository host pgbackrest-repo over TLS, archive_timeout)
#   pgbackrest-server   pgBackRest's TLS server on the PostgreSQL side (service pgbackrest-db),
#                       through which the backup worker takes physical backups
#   wal-switch          closes the WAL segment every PITR_ARCHIVE_TIMEOUT seconds (service wal-switch)
#   anything else       run as given (shop-pitr-restore: README "Point-in-time recovery in compose")
# Started as root, it hands the TLS key to the postgres user (pgBackRest accepts a key only
# when it is private to the user reading it) and then runs everything as that user.
set -Eeuo pipefail

run_dir=/tmp/pgbackrest
tls_in=/etc/pgbackrest/tls  # bind mount of database/pgbackrest/tls (made by `make init`)
tls="$run_dir/tls"

is_true() {
    case "$(printf '%s' "${1:-}" | tr '[:upper:]' '[:lower:]')" in
        1 | true | yes | on | y) return 0 ;;
        *) return 1 ;;
    esac
}

prepare_pgbackrest() {
    local owner=postgres
    [ "$(id -u)" = 0 ] || owner="$(id -un)"
    if [ "$(id -u)" = 0 ]; then
        install -d -o "$owner" -g "$owner" -m 0700 "$run_dir" "$run_dir/lock" "$run_dir/spool" "$tls"
    else
        install -d -m 0700 "$run_dir" "$run_dir/lock" "$run_dir/spool" "$tls"
    fi
    local name
    for name in ca.crt pg.crt pg.key; do
        if [ ! -r "$tls_in/$name" ]; then
            echo "shop-database-entrypoint: $tls_in/$name is missing: run \`make init\`, which creates" \
                "the pgBackRest TLS certificates in database/pgbackrest/tls/ (README" \
                "\"Point-in-time recovery in compose\")." >&2
            return 1
        fi
        if [ "$(id -u)" = 0 ]; then
            install -o "$owner" -g "$owner" -m 0600 "$tls_in/$name" "$tls/$name"
        else
            install -m 0600 "$tls_in/$name" "$tls/$name"
        fi
    done
}

# repo2 (S3) is kept by the repository host (pgbackrest-repo), which has the keys; archive-push
# reaches it there over the same TLS connection as repo1 (pgBackRest runs the remote for repo2
# with the repository host's own configuration). The same rule as the repository host's
# (ops/entrypoint.sh): a bucket, and an endpoint that is not plain HTTP (pgBackRest speaks HTTPS
# only to S3). Both sides must agree: a repo2 only one of them has fails every push or backup.
s3_repository_on() {
    [ -n "${BACKUP_S3_BUCKET:-}" ] || return 1
    case "${BACKUP_S3_ENDPOINT_URL:-}" in
        http://*) return 1 ;;
    esac
}

export_repo2_on_the_repository_host() {
    export PGBACKREST_REPO2_HOST=pgbackrest-repo PGBACKREST_REPO2_HOST_TYPE=tls \
        PGBACKREST_REPO2_HOST_CA_FILE="$tls/ca.crt" PGBACKREST_REPO2_HOST_CERT_FILE="$tls/pg.crt" \
        PGBACKREST_REPO2_HOST_KEY_FILE="$tls/pg.key" PGBACKREST_REPO2_HOST_CONFIG=/tmp/pgbackrest/pgbackrest.conf
}

case "${1:-postgres}" in
    postgres)
        # A restore to a time whose switch of the data directory was interrupted: complete it.
        if [ -f "${PGDATA:-/var/lib/postgresql/data}/pitr/switching" ]; then
            if [ "$(id -u)" = 0 ]; then gosu postgres shop-pitr-restore finish-switch; else shop-pitr-restore finish-switch; fi
        fi
        if is_true "${PITR_ENABLED:-false}"; then
            prepare_pgbackrest
            # %p is relative to the data directory: pgBackRest resolves it with pg1-path.
            set -- "$@" \
                -c archive_mode=on \
                -c "archive_command=pgbackrest --stanza=shop archive-push %p" \
                -c "archive_timeout=${PITR_ARCHIVE_TIMEOUT:-60}"
            repositories="repo1"
            if s3_repository_on; then
                export_repo2_on_the_repository_host
                repositories="repo1 and repo2 (S3)"
            fi
            echo "shop-database-entrypoint: WAL archiving on to $repositories (archive_timeout ${PITR_ARCHIVE_TIMEOUT:-60} s)"
        fi
        exec docker-entrypoint.sh "$@"
        ;;
    pgbackrest-server)
        prepare_pgbackrest
        if [ "$(id -u)" = 0 ]; then
            exec gosu postgres pgbackrest server
        fi
        exec pgbackrest server
        ;;
    wal-switch)
        # Closes the current WAL segment every PITR_ARCHIVE_TIMEOUT seconds so it is archived (the
        # RPO). archive_timeout is meant to do it, but on our machines PostgreSQL (15 and 17)
        # did not honour it: the checkpointer slept the whole checkpoint_timeout and the segment
        # waited minutes. pg_switch_wal() does nothing when no WAL was written since the last
        # switch, and nothing is switched while archiving is off. Through the shared socket.
        interval="${PITR_ARCHIVE_TIMEOUT:-60}"
        trap 'exit 0' TERM INT
        while true; do
            sleep "$interval" &
            wait $!
            psql -h /var/run/postgresql -U "${POSTGRES_USER:-postgres}" -d postgres -XAtq -c \
                "SELECT pg_switch_wal() FROM pg_settings WHERE name = 'archive_mode' AND setting <> 'off'" \
                >/dev/null || echo "wal-switch: PostgreSQL did not answer; again in $interval s" >&2
        done
        ;;
    *)
        exec "$@"
        ;;
esac

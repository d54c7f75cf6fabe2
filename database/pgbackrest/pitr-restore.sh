#!/usr/bin/env bash
# Restore to a time inside the compose stack's database volume: the part that runs in the shop's
# database image (the pitr-restore one-shot), driven by `make pitr-restore` (ops/pitr_restore.py;
# README "Point-in-time recovery in compose"). Runs as the postgres user; the live cluster
# ($PGDATA, the root of the postgres_data volume) is never written to until the switch.
#
#   shop-pitr-restore info                  `pgbackrest info --output=json` of every repository this
#       one-shot can read (repo1, and repo2 when S3 is configured over HTTPS): ops/pitr_restore.py
#       chooses the repository from it when REPO is not given (shop/backups/pitr/repository.py)
#   shop-pitr-restore plan TARGET [REPO]    what a restore to TARGET would use (nothing changes)
#   shop-pitr-restore recover TARGET STAMP [REPO]  restore the newest backup before TARGET into
#       $PGDATA/pitr/restore-STAMP, replay the archived WAL up to TARGET on a temporary server
#       (listening on the compose network, so the shop image can read the restored rows), check
#       it, print READY, then wait for `decide switch|abort` (ops/pitr_restore.py), stop the
#       server, and switch or delete the restored directory.
#   shop-pitr-restore decide switch|abort   the decision the waiting `recover` acts on
#   shop-pitr-restore finish-switch         complete a switch that was interrupted (run by the
#       image's entrypoint before PostgreSQL starts)
#
# The switch moves every entry of $PGDATA (but pitr/) into $PGDATA/pitr/before-STAMP (kept for
# rollback), then the restored entries into $PGDATA. Renames within one file system: seconds for
# any size. A journal ($PGDATA/pitr/switching) says how far it got; `finish-switch` completes it.
# TARGET: a time with its UTC offset ("2026-11-28 10:15:00+00") or `latest`. REPO: 1 (default: the
# repository on the backup volume, read directly) or 2 (S3, when the backup volume is lost).
set -Eeuo pipefail

PGDATA="${PGDATA:-/var/lib/postgresql/data}"
pitr="$PGDATA/pitr"
journal="$pitr/switching"
decision=/tmp/pitr-decision
socket_dir=/tmp/pitr-socket
superuser="${POSTGRES_USER:-postgres}"

say() { printf 'shop-pitr-restore: %s\n' "$*"; }
fail() { printf 'shop-pitr-restore: ERROR: %s\n' "$*" >&2; exit 1; }

# use_repository REPO: every pgbackrest command of this run reads REPO only. repo2 is S3, described
# to pgBackRest through its PGBACKREST_* variables (the keys may not go on a command line) from the
# settings compose gives this one-shot, as shop/backups/pitr/config.py writes them for the
# repository host (this image has no Python).
repo=1
use_repository() {
    repo="${1:-1}"
    case "$repo" in
        1) return 0 ;;
        2) ;;
        *) fail "REPO=$repo: choose 1 (the backup volume) or 2 (S3)" ;;
    esac
    [ -n "${BACKUP_S3_BUCKET:-}" ] || fail "REPO=2: BACKUP_S3_BUCKET is not set, there is no S3 repository"
    case "${BACKUP_S3_ENDPOINT_URL:-}" in
        http://*) fail "REPO=2: $BACKUP_S3_ENDPOINT_URL is plain HTTP; pgBackRest reaches S3 over HTTPS only" ;;
    esac
    describe_s3_repository
    say "reading repo2, S3 bucket $BACKUP_S3_BUCKET ($PGBACKREST_REPO2_PATH)"
}

# describe_s3_repository: repo2 (S3) for pgBackRest, from the S3 settings.
describe_s3_repository() {
    local endpoint="${BACKUP_S3_ENDPOINT_URL:-}" region="${BACKUP_S3_REGION:-us-east-1}" prefix
    endpoint="${endpoint#https://}" endpoint="${endpoint%/}"
    prefix="${BACKUP_S3_PREFIX:-shop-backups}" prefix="${prefix#/}" prefix="${prefix%/}"
    export PGBACKREST_REPO2_TYPE=s3 PGBACKREST_REPO2_PATH="/$prefix/pgbackrest" \
        PGBACKREST_REPO2_S3_BUCKET="$BACKUP_S3_BUCKET" PGBACKREST_REPO2_S3_REGION="$region" \
        PGBACKREST_REPO2_S3_KEY="${BACKUP_S3_ACCESS_KEY_ID:-}" \
        PGBACKREST_REPO2_S3_KEY_SECRET="${BACKUP_S3_SECRET_ACCESS_KEY:-}"
    if [ -n "$endpoint" ]; then
        export PGBACKREST_REPO2_S3_ENDPOINT="${endpoint%%:*}" PGBACKREST_REPO2_S3_URI_STYLE=path
        [ "$endpoint" = "${endpoint%%:*}" ] || export PGBACKREST_REPO2_STORAGE_PORT="${endpoint##*:}"
    else
        export PGBACKREST_REPO2_S3_ENDPOINT="s3.$region.amazonaws.com" PGBACKREST_REPO2_S3_URI_STYLE=host
    fi
    case "$(printf '%s' "${PITR_S3_VERIFY_TLS:-true}" | tr '[:upper:]' '[:lower:]')" in
        0 | false | no | off | n) export PGBACKREST_REPO2_STORAGE_VERIFY_TLS=n ;;
        *) [ -z "${PITR_S3_CA_FILE:-}" ] || export PGBACKREST_REPO2_STORAGE_CA_FILE="$PITR_S3_CA_FILE" ;;
    esac
}

# info: every repository's state as JSON on stdout (repo2 only when S3 is configured over HTTPS).
info() {
    case "${BACKUP_S3_BUCKET:-}:${BACKUP_S3_ENDPOINT_URL:-}" in
        :* | *:http://*) ;;
        *) describe_s3_repository ;;
    esac
    pgbackrest --stanza=shop --output=json info
}


plan() {
    local target="$1"
    pgbackrest --stanza=shop --repo="$repo" info || fail "cannot read the pgBackRest repository repo$repo"
    say "would restore to $target the newest backup that finished before it into $pitr/restore-<stamp>,"
    say "replay WAL there on a temporary server, then move the live cluster to $pitr/before-<stamp>"
}

# --- the switch ---------------------------------------------------------------------------------
move_entries() {  # move_entries FROM TO [EXCEPT]: every entry of FROM into TO
    local from="$1" to="$2" except="${3:-}" entry
    shopt -s dotglob nullglob
    for entry in "$from"/*; do
        [ -n "$except" ] && [ "$(basename "$entry")" = "$except" ] && continue
        mv -- "$entry" "$to/"
    done
    shopt -u dotglob nullglob
}

switch_to() {
    local stamp="$1"
    local restored="$pitr/restore-$stamp" previous="$pitr/before-$stamp"
    [ -s "$restored/PG_VERSION" ] || fail "$restored is not a restored cluster: nothing switched"
    mkdir -p -m 0700 "$previous"
    printf '%s old-out\n' "$stamp" > "$journal.tmp" && sync "$journal.tmp" && mv "$journal.tmp" "$journal" && sync "$pitr"
    finish_switch
}

finish_switch() {
    [ -f "$journal" ] || return 0
    local stamp phase
    read -r stamp phase < "$journal"
    local restored="$pitr/restore-$stamp" previous="$pitr/before-$stamp"
    if [ "$phase" = old-out ]; then
        # The live cluster's entries are the only ones in $PGDATA yet (the restored ones follow).
        move_entries "$PGDATA" "$previous" pitr
        printf '%s new-in\n' "$stamp" > "$journal.tmp" && sync "$journal.tmp" && mv "$journal.tmp" "$journal" && sync "$pitr"
    fi
    move_entries "$restored" "$PGDATA"
    rmdir "$restored"
    sync "$PGDATA"
    rm -f "$journal"
    say "switched: $PGDATA is the cluster restored at $stamp; the previous one is in $previous"
}

# --- restore and recovery -----------------------------------------------------------------------
server_log() { tail -n 30 "$1" 2>/dev/null | sed 's/^/  postgres: /' >&2 || true; }

discard=""
discard_restored() {
    [ -n "$discard" ] || return 0
    pg_ctl -D "$discard" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$discard"
    say "nothing switched: the live cluster is untouched ($discard deleted)"
}

# replay DIR LOG TARGET: start a temporary server on DIR (archiving off) and wait until it has
# replayed the WAL and promoted itself. Status 2 (the server stopped) when the archive ends before
# TARGET (PostgreSQL then refuses to go on); any other failure ends the restore.
target_not_reached="recovery ended before configured recovery target was reached"
replay() {
    local restored="$1" log="$2" target="$3"
    # archive_mode off: the temporary server archives nothing; the new timeline's history file
    # is marked ready afterwards (mark_history_ready) and the database service archives it when
    # it starts.
    if ! pg_ctl -D "$restored" -w -t 3600 -l "$log" \
        -o "-c config_file=/etc/postgresql/postgresql.conf -c listen_addresses=* -c port=5432 -c unix_socket_directories=$socket_dir -c archive_mode=off" \
        start >/dev/null; then
        grep -q "$target_not_reached" "$log" && return 2
        server_log "$log"
        fail "the restored cluster did not start (above: its log)"
    fi
    local in_recovery=t
    for _ in $(seq 3600); do
        in_recovery="$(psql -h "$socket_dir" -U "$superuser" -d postgres -Atc 'SELECT pg_is_in_recovery()' 2>/dev/null || echo gone)"
        [ "$in_recovery" = f ] && return 0
        if ! pg_ctl -D "$restored" status >/dev/null 2>&1; then
            grep -q "$target_not_reached" "$log" && return 2
            server_log "$log"
            fail "the restored cluster stopped during recovery: is the WAL up to $target archived? (above: its log)"
        fi
        sleep 1
    done
    server_log "$log"
    fail "recovery did not finish within an hour"
}

# mark_history_ready DIR: the new timeline's history file to be archived by the database service.
# The temporary server runs with archive_mode off, and PostgreSQL then marks nothing for the
# archiver: without 0000000N.history in the repositories a later restore to a time cannot follow
# the new timeline and stops at the end of the old one (seen: a second restore lost every order
# placed after the first). Files fetched from the archive during recovery are marked done already.
mark_history_ready() {
    local history name
    for history in "$1"/pg_wal/*.history; do
        [ -e "$history" ] || continue
        name="$(basename "$history")"
        [ -e "$1/pg_wal/archive_status/$name.done" ] || touch "$1/pg_wal/archive_status/$name.ready"
    done
}

recover() {
    local target="$1" stamp="$2"
    local restored="$pitr/restore-$stamp" log="/tmp/pitr-postgres.log"
    finish_switch
    [ -s "$PGDATA/postmaster.pid" ] && pg_ctl -D "$PGDATA" status >/dev/null 2>&1 \
        && fail "PostgreSQL is running on $PGDATA: stop the database service first (make pitr-restore does)"
    mkdir -p -m 0700 "$pitr"
    [ -e "$restored" ] && fail "$restored exists already"
    mkdir -m 0700 "$restored"
    rm -f "$decision"
    # However this ends before the switch: the temporary server stopped, the restored copy gone.
    discard="$restored"
    trap discard_restored EXIT
    trap 'exit 1' INT TERM

    say "restoring the newest backup before $target into $restored"
    # restore_command of the temporary server: the repository on the backup volume, and WAL
    # fetched into the restored directory (%p is relative to pg1-path).
    local target_options=(--type=default)
    if [ "$target" != latest ]; then
        target_options=(--type=time "--target=$target" --target-action=promote)
    fi
    pgbackrest --stanza=shop --repo="$repo" --pg1-path="$restored" "${target_options[@]}" \
        "--recovery-option=restore_command=pgbackrest --stanza=shop --repo=$repo --pg1-path=$restored archive-get %f \"%p\"" \
        restore

    say "replaying the archived WAL up to $target"
    mkdir -p -m 0700 "$socket_dir"
    if ! replay "$restored" "$log" "$target"; then
        # The WAL after the newest archived segment was lost with the server (its data directory
        # destroyed): the newest state there is is the end of the archive, just before the target.
        say "the archive ends before $target (the newer WAL was lost): replaying to the end of the archive"
        sed -i '/^recovery_target/d' "$restored/postgresql.auto.conf"
        touch "$restored/recovery.signal"
        log="/tmp/pitr-postgres-end.log"
        replay "$restored" "$log" "$target" || { server_log "$log"; fail "the restored cluster stopped during recovery (above: its log)"; }
        say "END OF ARCHIVE: restored to the end of the archive, before $target"
    fi
    grep -E "recovery stopping|last completed transaction|archive recovery complete|selected new timeline" "$log" \
        | sed 's/^/  postgres: /' || true
    mark_history_ready "$restored"
    # The check: the restored cluster answers and has the shop's database.
    local found
    found="$(psql -h "$socket_dir" -U "$superuser" -d postgres -Atc \
        "SELECT count(*) FROM pg_database WHERE datname = '${POSTGRES_DB:-shop}'")"
    [ "$found" = 1 ] || fail "the restored cluster has no database ${POSTGRES_DB:-shop}"
    # The restore_command above names this directory: the live cluster must not keep it.
    psql -h "$socket_dir" -U "$superuser" -d postgres -qAtc "ALTER SYSTEM RESET restore_command"
    say "READY: the cluster restored to $target answers on port 5432 of this container"

    # ops/pitr_restore.py reads the rows' image names now and brings the images back, then decides.
    local waited=0
    while [ ! -s "$decision" ]; do
        sleep 1
        waited=$((waited + 1))
        [ "$waited" -lt "${PITR_DECISION_TIMEOUT:-7200}" ] || fail "no decision within ${PITR_DECISION_TIMEOUT:-7200} s"
    done
    pg_ctl -D "$restored" -m fast -w stop >/dev/null
    if [ "$(cat "$decision")" != switch ]; then
        fail "aborted: $(cat "$decision")"
    fi
    discard=""
    switch_to "$stamp"
}

case "${1:-}" in
    info) info ;;
    plan) use_repository "${3:-1}" && plan "${2:?plan TARGET}" ;;
    recover) use_repository "${4:-1}" && recover "${2:?recover TARGET STAMP}" "${3:?recover TARGET STAMP}" ;;
    decide) printf '%s\n' "${2:?decide switch|abort}" > "$decision.tmp" && mv "$decision.tmp" "$decision" ;;
    finish-switch) finish_switch ;;
    *) fail "usage: shop-pitr-restore info | plan TARGET [REPO] | recover TARGET STAMP [REPO] | decide switch|abort | finish-switch" ;;
esac

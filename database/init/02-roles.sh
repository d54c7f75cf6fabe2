#!/usr/bin/env bash
# The shop's database roles. Runs once when the cluster is created (the postgres image's
# /docker-entrypoint-initdb.d, and the Docker-less runner, which also runs it at every start),
# as the superuser POSTGRES_USER in POSTGRES_DB. Idempotent: run it by hand to add the roles to
# an existing cluster (README "Database roles"):
#
#   docker compose exec database /docker-entrypoint-initdb.d/02-roles.sh
#
# - APP_DB_USER (default shop_app), password APP_DB_PASSWORD: the shop (gunicorn, the worker,
#   beat, migrate). LOGIN only: no superuser, CREATEDB, CREATEROLE, replication or BYPASSRLS.
#   It owns POSTGRES_DB and every object in it (objects made before it existed, by the old
#   superuser connection, are handed over), so migrations run as it.
# - BACKUP_DB_USER (default shop_backup), password BACKUP_DB_PASSWORD: only the backup worker
#   and the backup/restore commands. No superuser; CREATEDB and a member of the app role, which
#   is what pg_dump (read every table), the restore (create a database owned by the app role,
#   end the app's sessions, rename and drop the app role's databases) and the advisory lock on
#   the maintenance database need.
#
# Passwords are read by psql from the environment (\getenv, psql 15+), so they appear on no
# command line, and the session logs no statements, so they reach no server log.
#
# Sourced by the postgres image when not executable: no `exit`, no shell options changed.

shop_database_roles() {
    local app_user="${APP_DB_USER:-shop_app}" backup_user="${BACKUP_DB_USER:-shop_backup}"
    local superuser="${POSTGRES_USER:-postgres}" database="${POSTGRES_DB:-${POSTGRES_USER:-postgres}}"
    local name
    for name in APP_DB_PASSWORD BACKUP_DB_PASSWORD; do
        if [ -z "${!name:-}" ]; then
            echo "02-roles.sh: $name is not set: set it in .env (make init generates it)." >&2
            return 1
        fi
    done
    if [ "$app_user" = "$superuser" ] || [ "$backup_user" = "$superuser" ] || [ "$app_user" = "$backup_user" ]; then
        echo "02-roles.sh: APP_DB_USER ($app_user), BACKUP_DB_USER ($backup_user) and POSTGRES_USER" \
            "($superuser) must be three different roles." >&2
        return 1
    fi
    echo "02-roles.sh: app role $app_user, backup role $backup_user, owner of database $database"
    # By hand in the container, where local connections may also want the password.
    PGPASSWORD="${PGPASSWORD:-${POSTGRES_PASSWORD:-}}" \
        "${PSQL:-psql}" -v ON_ERROR_STOP=1 --no-psqlrc -q --username "$superuser" --dbname "$database" \
        -v app_user="$app_user" -v backup_user="$backup_user" -v db="$database" <<'SQL'
\getenv app_password APP_DB_PASSWORD
\getenv backup_password BACKUP_DB_PASSWORD
-- Nothing of this session in the server log (log_statement = 'ddl' would log the passwords)
-- or in pg_stat_statements (which records utility statements verbatim).
SET log_statement = 'none';
SET log_min_duration_statement = -1;
SET log_min_error_statement = 'panic';
SET pg_stat_statements.track_utility = off;
SET client_min_messages = warning;

SELECT format('CREATE ROLE %I', :'app_user')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app_user') \gexec
ALTER ROLE :"app_user" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT
    PASSWORD :'app_password';

SELECT format('CREATE ROLE %I', :'backup_user')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'backup_user') \gexec
ALTER ROLE :"backup_user" WITH LOGIN NOSUPERUSER CREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT
    PASSWORD :'backup_password';
-- Membership: the backup role has the app role's privileges (reads its tables, owns what it
-- owns for RENAME/DROP DATABASE and ALLOW_CONNECTIONS, may end its sessions, may create
-- databases OWNER it, pg_restore --role=it).
GRANT :"app_user" TO :"backup_user";

-- The shop database and everything in it belong to the app role (public schema: owned by
-- pg_database_owner, so by the database's owner). Existing installations: tables, views,
-- sequences and functions the migrations made as the superuser are handed over; objects of
-- extensions stay as they are.
ALTER DATABASE :"db" OWNER TO :"app_user";
-- The restore's rollback copies and scratch databases (<db>__pre_restore_*, ...) of an older
-- installation, so the backup role may rename and drop them as it does its own.
SELECT format('ALTER DATABASE %I OWNER TO %I', datname, :'app_user') FROM pg_database
WHERE starts_with(datname, :'db' || '__')
  AND datdba <> (SELECT oid FROM pg_roles WHERE rolname = :'app_user') \gexec
SELECT format(
    'ALTER %s %s OWNER TO %I',
    CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                   WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
    c.oid::regclass, :'app_user')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%'
  AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = :'app_user')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
  -- a serial or identity column's sequence follows its table
  AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d
           WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
             AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
ORDER BY c.relkind = 'S', c.oid \gexec
SELECT format('ALTER ROUTINE %s OWNER TO %I', p.oid::regprocedure, :'app_user')
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND p.proowner <> (SELECT oid FROM pg_roles WHERE rolname = :'app_user')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e') \gexec
SQL
}

shop_database_roles

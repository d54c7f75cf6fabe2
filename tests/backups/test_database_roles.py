"""The shop's database roles (database/init/02-roles.sh): the app role, which is no superuser
and cannot create databases but owns the shop database (migrations run as it), and the backup
role, which backs up and restores (BACKUP_DATABASE_URL) without being a superuser.

Real PostgreSQL: a database and two roles of their own (random names, dropped afterwards),
made the way the postgres image and the runner make them on first start (the database as the
superuser, database/init/01-extensions.sql, then 02-roles.sh); the shop runs in child
processes with DATABASE_URL as the app role and BACKUP_DATABASE_URL as the backup role.
"""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from django.conf import settings as django_settings
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent.parent
INIT_DIR = ROOT / "database" / "init"
ROLES_SCRIPT = INIT_DIR / "02-roles.sh"


def server() -> dict:
    db = django_settings.DATABASES["default"]
    return {"host": db["HOST"] or "127.0.0.1", "port": str(db["PORT"] or 5432)}


def superuser() -> str:
    return django_settings.DATABASES["default"]["USER"] or "postgres"


def connect(user: str, dbname: str) -> psycopg.Connection:
    # The test server trusts loopback: no password is checked (the stack test's runner does).
    return psycopg.connect(**server(), user=user, dbname=dbname, autocommit=True)


def url(user: str, dbname: str) -> str:
    return f"postgres://{user}:secret-{user}@{server()['host']}:{server()['port']}/{dbname}"


class Cluster:
    """A shop database and its two roles on the test server."""

    def __init__(self, tmp_path: Path):
        token = uuid.uuid4().hex[:10]
        self.db = f"shoptest_{token}"
        self.app = f"shoptest_{token}_app"
        self.backup = f"shoptest_{token}_backup"
        self.tmp = tmp_path

    def superuser_connection(self, dbname: str = "postgres") -> psycopg.Connection:
        return connect(superuser(), dbname)

    def init_database(self, dbname: str | None = None, before_roles: str = "") -> None:
        """What the postgres image does on first start: CREATE DATABASE as the superuser, then
        database/init in order (with `before_roles` run in between, as an older installation's
        migrations did)."""
        dbname = dbname or self.db
        with self.superuser_connection() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        self.psql(dbname, "-f", str(INIT_DIR / "01-extensions.sql"))
        if before_roles:
            self.psql(dbname, "-c", before_roles)
        self.run_roles_script(dbname)

    def psql(self, dbname: str, *args: str) -> None:
        env = {**os.environ, "PGHOST": server()["host"], "PGPORT": server()["port"]}
        command = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", superuser(), "-d", dbname, *args]
        subprocess.run(command, env=env, check=True, capture_output=True)

    def run_roles_script(self, dbname: str | None = None) -> subprocess.CompletedProcess:
        env = {
            **os.environ,
            "PGHOST": server()["host"],
            "PGPORT": server()["port"],
            "POSTGRES_USER": superuser(),
            "POSTGRES_DB": dbname or self.db,
            "APP_DB_USER": self.app,
            "APP_DB_PASSWORD": f"secret-{self.app}",
            "BACKUP_DB_USER": self.backup,
            "BACKUP_DB_PASSWORD": f"secret-{self.backup}",
        }
        command = ["bash", str(ROLES_SCRIPT)]
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def manage(self, *args: str, backup_role: bool = True) -> subprocess.CompletedProcess:
        """manage.py as the shop runs it: DATABASE_URL the app role; BACKUP_DATABASE_URL the
        backup role (only for the backup and restore commands)."""
        env = {
            **os.environ,
            "DJANGO_READ_DOT_ENV": "false",
            "DATABASE_URL": url(self.app, self.db),
            "MEDIA_ROOT": str(self.tmp / "uploads"),
            "BACKUP_PATH": str(self.tmp / "backups"),
            "LOG_DIR": str(self.tmp / "logs"),
            "BACKUP_S3_BUCKET": "",
        }
        env.pop("BACKUP_DATABASE_URL", None)
        if backup_role:
            env["BACKUP_DATABASE_URL"] = url(self.backup, self.db)
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def drop(self) -> None:
        with self.superuser_connection() as conn:
            names = [
                row[0]
                for row in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname = %s OR starts_with(datname, %s)",
                    [self.db, f"{self.db}_"],
                )
            ]
            for name in names:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            for role in (self.backup, self.app):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def owners(conn: psycopg.Connection) -> dict[str, str]:
    """Owner of every relation of the shop (outside the system schemas and extensions)."""
    rows = conn.execute(
        """
        SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                          AND d.objid = c.oid AND d.deptype = 'e')
        """
    )
    return dict(rows.fetchall())


def database_owner(conn: psycopg.Connection, dbname: str) -> str:
    query = "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s"
    return conn.execute(query, [dbname]).fetchone()[0]


def role_attributes(conn: psycopg.Connection, role: str) -> dict:
    row = conn.execute(
        "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin "
        "FROM pg_roles WHERE rolname = %s",
        [role],
    ).fetchone()
    keys = ("superuser", "createdb", "createrole", "replication", "bypassrls", "login")
    return dict(zip(keys, row, strict=True))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The shop database made by database/init and migrated by `manage.py migrate` as the app role."""
    cluster = Cluster(tmp_path_factory.mktemp("roles"))
    try:
        cluster.init_database()
        result = cluster.manage("migrate", "--no-input", backup_role=False)
        assert result.returncode == 0, result.stdout + result.stderr
        yield cluster
    finally:
        cluster.drop()


def test_the_app_role_is_no_superuser_and_cannot_create_databases(cluster):
    with cluster.superuser_connection() as conn:
        assert role_attributes(conn, cluster.app) == {
            "superuser": False,
            "createdb": False,
            "createrole": False,
            "replication": False,
            "bypassrls": False,
            "login": True,
        }
    with connect(cluster.app, cluster.db) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(f"{cluster.db}_by_app")))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE ROLE shoptest_made_by_app")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE EXTENSION pg_buffercache")


def test_migrations_ran_as_the_app_role_which_owns_the_database_and_everything_in_it(cluster):
    with cluster.superuser_connection(cluster.db) as conn:
        assert database_owner(conn, cluster.db) == cluster.app
        relations = owners(conn)
        assert "catalog_product" in relations
        assert "orders_order_number_seq" in relations
        assert set(relations.values()) == {cluster.app}
        applied = conn.execute("SELECT count(*) FROM django_migrations").fetchone()[0]
        assert applied > 10


def test_the_backup_role_can_do_no_superuser_things(cluster):
    with cluster.superuser_connection() as conn:
        assert role_attributes(conn, cluster.backup) == {
            "superuser": False,
            "createdb": True,
            "createrole": False,
            "replication": False,
            "bypassrls": False,
            "login": True,
        }
        members = conn.execute(
            "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
            "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s",
            [cluster.backup],
        )
        assert [row[0] for row in members] == [cluster.app]
    with connect(cluster.backup, cluster.db) as conn:
        # It reads the shop's tables (pg_dump), as a member of the app role.
        conn.execute("SELECT count(*) FROM catalog_product")
        for statement in (
            f"ALTER ROLE {cluster.backup} SUPERUSER",
            "CREATE ROLE shoptest_made_by_backup",
            "ALTER SYSTEM SET work_mem = '1GB'",
            "COPY (SELECT 1) TO PROGRAM 'true'",
            "SELECT rolpassword FROM pg_authid",
            "CREATE EXTENSION pg_buffercache",
            "DROP DATABASE postgres",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    with connect(cluster.backup, "postgres") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(sql.SQL("ALTER ROLE {} SUPERUSER").format(sql.Identifier(cluster.app)))


def test_the_roles_script_is_idempotent_and_hands_an_existing_database_over(tmp_path):
    """An installation from before the roles: its tables, sequences and functions were made by
    the superuser. The script, run (twice) by hand, gives them all to the app role."""
    cluster = Cluster(tmp_path)
    rollback_copy = f"{cluster.db}__pre_restore_20260101T000000Z"  # left by an older restore
    try:
        with cluster.superuser_connection() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(rollback_copy)))
        cluster.init_database(
            before_roles="CREATE TABLE old_orders (id serial PRIMARY KEY, total numeric);"
            "CREATE SEQUENCE old_number_seq; CREATE VIEW old_totals AS SELECT sum(total) FROM old_orders;"
            "CREATE FUNCTION old_answer() RETURNS int LANGUAGE sql AS 'SELECT 42';"
        )
        cluster.run_roles_script()
        with cluster.superuser_connection() as conn:
            assert database_owner(conn, rollback_copy) == cluster.app  # the restore may drop it
        with cluster.superuser_connection(cluster.db) as conn:
            assert database_owner(conn, cluster.db) == cluster.app
            old = ("old_orders", "old_orders_id_seq", "old_orders_pkey", "old_number_seq", "old_totals")
            assert owners(conn) == dict.fromkeys(old, cluster.app)
            function_owner = "SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE proname = 'old_answer'"
            assert conn.execute(function_owner).fetchone()[0] == cluster.app
            # the superuser's extension stays the superuser's
            extension = "SELECT pg_get_userbyid(extowner) FROM pg_extension WHERE extname = %s"
            assert conn.execute(extension, ["pg_stat_statements"]).fetchone()[0] == superuser()
        with connect(cluster.app, cluster.db) as conn:
            conn.execute("INSERT INTO old_orders (total) VALUES (1)")
            conn.execute("ALTER TABLE old_orders ADD COLUMN note text")  # as a migration would
    finally:
        cluster.drop()


def test_backup_and_restore_run_as_the_backup_role_and_the_app_role_owns_the_result(cluster):
    """A full round trip of the database: backup_now and restore_backup with the backup role,
    the shop as the app role, whose session is ended by the restore. The dump holds
    pg_stat_statements, which only a superuser may create: it is left out, and said so."""
    shell = "from shop.catalog.models import Category; Category.objects.create(name='{0}', slug='{0}')"
    assert cluster.manage("shell", "-c", shell.format("kept"), backup_role=False).returncode == 0

    backup = cluster.manage("backup_now", "--no-upload", "--only", "db")
    assert backup.returncode == 0, backup.stdout + backup.stderr
    set_id = backup.stdout.splitlines()[-1]

    shop_session = connect(cluster.app, cluster.db)  # the running shop
    shop_session.execute("DELETE FROM catalog_category WHERE slug = 'kept'")

    restore = cluster.manage("restore_backup", set_id, "--yes", "--only", "db")
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert "Left out: extension(s) pg_stat_statements" in restore.stdout
    assert "Restore complete." in restore.stdout
    with pytest.raises(psycopg.OperationalError):
        shop_session.execute("SELECT 1")  # ended by the restore; the shop reconnects

    with cluster.superuser_connection() as conn:
        assert database_owner(conn, cluster.db) == cluster.app
        previous = conn.execute(
            "SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE starts_with(datname, %s)",
            [f"{cluster.db}__pre_restore_"],
        ).fetchall()
        assert [owner for _, owner in previous] == [cluster.app]
    with cluster.superuser_connection(cluster.db) as conn:
        relations = owners(conn)
        assert "catalog_product" in relations
        assert set(relations.values()) == {cluster.app}
        extensions = {row[0] for row in conn.execute("SELECT extname FROM pg_extension")}
        assert "pg_trgm" in extensions
        assert "pg_stat_statements" not in extensions

    # The shop, as the app role, reads and writes the restored database and can migrate it.
    check = "from shop.catalog.models import Category; assert Category.objects.filter(slug='kept').exists()"
    result = cluster.manage("shell", "-c", check, backup_role=False)
    assert result.returncode == 0, result.stdout + result.stderr
    result = cluster.manage("shell", "-c", shell.format("new"), backup_role=False)
    assert result.returncode == 0, result.stdout + result.stderr
    result = cluster.manage("migrate", "--check", backup_role=False)
    assert result.returncode == 0, result.stdout + result.stderr

    # The weekly test restore, also as the backup role.
    verify = cluster.manage("verify_backup", set_id, "--deep")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "left out extension(s) pg_stat_statements" in verify.stdout


def test_the_app_role_alone_cannot_restore(cluster):
    """Without BACKUP_DATABASE_URL the commands use DATABASE_URL's role: the app role may not
    create the staging database, and the restore stops with the live database untouched."""
    backup = cluster.manage("backup_now", "--no-upload", "--only", "db")
    assert backup.returncode == 0, backup.stdout + backup.stderr
    restore = cluster.manage("restore_backup", "--latest", "--yes", "--only", "db", backup_role=False)
    assert restore.returncode != 0
    assert "permission denied to create database" in restore.stderr
    with cluster.superuser_connection() as conn:
        assert database_owner(conn, cluster.db) == cluster.app


def test_the_backup_role_ends_the_apps_sessions_and_names_those_it_may_not_end(cluster):
    """The swap's rename as the backup role: the app's sessions are ended; a superuser's session
    (an administrator's psql) cannot be, so the rename gives up and says whose it is."""
    from shop.backups import database
    from shop.backups.errors import BackupError

    busy = f"{cluster.db}_busy"
    with cluster.superuser_connection() as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(busy), sql.Identifier(cluster.app))
        )
    with connect(cluster.backup, "postgres") as backup:
        app_session = connect(cluster.app, busy)
        database._rename(backup, busy, f"{busy}_renamed", timeout=5)
        with pytest.raises(psycopg.OperationalError):
            app_session.execute("SELECT 1")

        admin_session = connect(superuser(), f"{busy}_renamed")
        with pytest.raises(
            BackupError, match=f"still in use by sessions the backup role may not end: user {superuser()}"
        ):
            database._rename(backup, f"{busy}_renamed", busy, timeout=1)
        admin_session.execute("SELECT 1")  # left alone
        admin_session.close()

"""Every connection option of DATABASES["default"] reaches pg_dump, pg_restore and our own
connections (the lock, CREATE/RENAME DATABASE), as Django's dbshell passes them.

The machine's PostgreSQL has no SSL, so `sslmode=require` makes a connection fail: when it
does, the option has visibly arrived (ignored, the connection would succeed)."""

import psycopg
import pytest
from django.conf import settings
from django.core.management.base import CommandError

from shop.backups import database
from shop.backups.errors import BackupError
from tests.backups.conftest import backup_now, run_command

pytestmark = pytest.mark.django_db(transaction=True)

NO_SSL = "server does not support SSL, but SSL was required"


@pytest.fixture
def ssl_server():
    with database.maintenance_connection() as conn:
        if conn.execute("SHOW ssl").fetchone()[0] == "on":
            pytest.skip("this PostgreSQL server supports SSL: sslmode=require would not be refused")


@pytest.fixture
def with_options(_drop_derived_databases):
    """Set more OPTIONS in DATABASES["default"] (a copy), restored before the derived databases
    are dropped after the test (which must connect with the original options)."""
    original = settings.DATABASES

    def set_options(fields: dict | None = None, **options) -> None:
        default = {**original["default"], **(fields or {})}
        settings.DATABASES = {
            **original,
            "default": {**default, "OPTIONS": {**default.get("OPTIONS", {}), **options}},
        }

    yield set_options
    settings.DATABASES = original


@pytest.fixture
def a_dump(shop_data, backup_settings):
    set_id = backup_now("--no-upload", "--only", "db")
    return backup_settings.BACKUP_PATH / set_id / "db.dump"


@pytest.fixture(params=["sslmode", "service"])
def require_ssl(request, with_options, tmp_path, monkeypatch, ssl_server):
    """sslmode=require in OPTIONS directly, or through a service file named by OPTIONS["service"]."""
    if request.param == "sslmode":
        with_options(sslmode="require")
    else:
        service_file = tmp_path / "pg_service.conf"
        service_file.write_text("[shop-backups-test]\nsslmode=require\n")
        monkeypatch.setenv("PGSERVICEFILE", str(service_file))
        with_options(service="shop-backups-test")


def test_pg_dump_gets_the_options(require_ssl, tmp_path):
    with pytest.raises(BackupError, match=f"pg_dump failed.*{NO_SSL}"):
        database.dump_snapshot("00000003-00000002-1", tmp_path / "db.dump")


def test_pg_restore_gets_the_options(a_dump, require_ssl):
    with pytest.raises(BackupError, match=f"pg_restore failed.*{NO_SSL}"):
        database.restore_dump(a_dump, database.derived_name("verify_options"))


def test_the_lock_and_maintenance_connections_get_the_options(shop_data, require_ssl):
    with pytest.raises(psycopg.OperationalError, match=NO_SSL):
        database.maintenance_connection()
    with pytest.raises(CommandError, match=f"backup failed: .*{NO_SSL}"):
        run_command("backup_now", "--no-upload")


def test_backup_and_restore_work_with_options_the_server_accepts(a_dump, with_options, shop_data):
    with_options(sslmode="disable", connect_timeout=5, options="-c lock_timeout=60000")
    backup_now("--no-upload")
    run_command("restore_backup", "--latest", "--yes")


def test_libpq_environment_has_every_option(with_options):
    with_options(
        {"HOST": "db.example", "PORT": "6543", "USER": "shop", "PASSWORD": "s3cret"},
        sslmode="verify-full",
        sslrootcert="/certs/root.crt",
        sslcert="/certs/client.crt",
        sslkey="/certs/client.key",
        passfile="/secrets/pgpass",
        service="shop",
        options="-c statement_timeout=0",
        isolation_level=1,  # Django's, not libpq's
    )
    env = database.libpq_env("shop__restoring_x")
    expected = {
        "PGHOST": "db.example",
        "PGPORT": "6543",
        "PGUSER": "shop",
        "PGPASSWORD": "s3cret",
        "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": "/certs/root.crt",
        "PGSSLCERT": "/certs/client.crt",
        "PGSSLKEY": "/certs/client.key",
        "PGPASSFILE": "/secrets/pgpass",
        "PGSERVICE": "shop",
        "PGOPTIONS": "-c statement_timeout=0",
        "PGDATABASE": "shop__restoring_x",
    }
    assert {key: env.get(key) for key in expected} == expected
    params = database.connection_params("postgres")
    assert params["sslrootcert"] == "/certs/root.crt"
    assert params["passfile"] == "/secrets/pgpass"
    assert params["dbname"] == "postgres"
    assert "isolation_level" not in params

"""The search's migrations need no superuser: pg_trgm is a trusted extension, so the app role
(which owns the shop's database, database/init/02-roles.sh) creates it, and its indexes."""

import os
import secrets
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from tests.test_settings import manage


@pytest.fixture
def database_of_a_plain_role():
    """A new database without pg_trgm, owned by a role with no superuser or CREATEDB."""
    server = urlsplit(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/shop"))
    admin_url = urlunsplit(server._replace(path="/postgres"))
    name = f"shop_trgm_{uuid.uuid4().hex[:10]}"
    password = secrets.token_urlsafe(16)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(password)
            )
        )
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(name))
        )
    host = server.hostname + (f":{server.port}" if server.port else "")
    try:
        yield f"postgres://{name}:{password}@{host}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def test_the_app_role_migrates_search_without_a_superuser(database_of_a_plain_role):
    result = manage("migrate", "--no-input", DATABASE_URL=database_of_a_plain_role, DJANGO_DEBUG="true")
    assert result.returncode == 0, result.stdout + result.stderr
    with psycopg.connect(database_of_a_plain_role) as connection:
        assert connection.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").fetchone()
        indexes = {row[0] for row in connection.execute("SELECT indexname FROM pg_indexes")}
        superuser = connection.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
    assert {"product_name_trgm", "category_name_trgm", "product_search_document"} <= indexes
    assert superuser == (False,)

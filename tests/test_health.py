import pytest


def test_healthz_answers_without_touching_services(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_each_dependency(client, db):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    checks = response.json()["checks"]
    assert {checks[name] for name in ("database", "redis", "media_root")} == {"ok"}


def test_readyz_is_503_when_media_root_is_not_writable(client, db, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "does-not-exist"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["media_root"].startswith("error")


def test_readyz_is_503_when_redis_is_unreachable(client, db, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1"  # nothing listens on port 1
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"].startswith("error")


@pytest.mark.django_db
def test_readyz_is_503_when_postgresql_is_unreachable(client, settings):
    from django.db import connections

    connection = connections["default"]
    connection.close()
    original = connection.settings_dict["PORT"]
    connection.settings_dict["PORT"] = 1
    try:
        response = client.get("/readyz")
    finally:
        connection.close()
        connection.settings_dict["PORT"] = original
    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("error")


def wsgi_get(path: str) -> tuple[str, bytes]:
    """A request through Django's real WSGI handler. The test client is not used here: it
    turns off the request_started hook that checks persistent connections."""
    from wsgiref.util import setup_testing_defaults

    from django.core.handlers.wsgi import WSGIHandler

    environ = {"PATH_INFO": path, "HTTP_HOST": "localhost"}
    setup_testing_defaults(environ)
    status = []
    body = b"".join(WSGIHandler()(environ, lambda s, headers: status.append(s)))
    return status[0], body


@pytest.mark.django_db(transaction=True)
def test_shop_reconnects_by_itself_after_postgresql_drops_its_connection():
    """What a PostgreSQL restart looks like to the app: its persistent connection dies."""
    import psycopg
    from django.db import connection

    assert wsgi_get("/readyz")[0].startswith("200")
    assert connection.connection is not None  # kept open between requests (CONN_MAX_AGE)
    dead_pid = connection.connection.info.backend_pid
    with psycopg.connect(**{**connection.get_connection_params(), "autocommit": True}) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [dead_pid])

    status, body = wsgi_get("/readyz")

    assert status.startswith("200"), body
    assert connection.connection.info.backend_pid != dead_pid

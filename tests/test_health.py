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

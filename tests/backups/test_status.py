"""Staff see the backups in the admin and probes see their age, read from the backup volume."""

import json

import pytest

from shop.backups import status
from tests.backups.conftest import backup_now, make_old, run_command

pytestmark = pytest.mark.django_db


def test_readyz_reports_a_missing_backup_without_becoming_unready(client, backup_settings):
    backup_settings.BACKUP_PATH.mkdir()  # the empty backup volume
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["backup"]["status"] == "missing"


def test_readyz_says_when_it_cannot_see_the_backup_volume(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["backup"]["status"] == "unknown"
    assert "does not exist here" in response.json()["backup"]["reason"]


def test_readyz_reports_the_age_of_the_newest_good_backup(client, shop_data, settings):
    set_id = backup_now("--no-upload")
    backup = client.get("/readyz").json()["backup"]
    assert backup["status"] == "ok"
    assert backup["newest_id"] == set_id
    assert 0 <= backup["age_seconds"] < 120

    status.record_local_check(set_id, False, "checksum mismatch")  # found corrupt later
    assert client.get("/readyz").json()["backup"]["status"] == "missing"
    status.record_local_check(make_old(set_id, days=3), True)  # the daily schedule's limit: 48 hours
    backup = client.get("/readyz").json()["backup"]
    assert backup["status"] == "stale"
    assert backup["max_age_seconds"] == 48 * 3600
    assert backup["age_seconds"] > backup["max_age_seconds"]


def test_the_admin_shows_sets_and_the_last_failure(admin_client, shop_data, backup_settings):
    set_id = backup_now("--no-upload")
    status.record_failure("upload", RuntimeError("S3 said no"), set_id)

    page = admin_client.get("/admin/backups/backupset/").content.decode()

    assert set_id in page
    assert "verified" in page
    assert "S3 said no" in page
    assert "Offsite: not configured" in page


def test_the_admin_page_is_for_staff_only(client, django_user_model):
    user = django_user_model.objects.create_user(username="shopper", password="pw-123-long-enough")
    client.force_login(user)
    assert client.get("/admin/backups/backupset/").status_code == 302  # to the admin login


def test_list_backups_json(shop_data):
    set_id = backup_now("--no-upload")
    [entry] = json.loads("\n".join(run_command("list_backups", "--json")))
    assert entry["id"] == set_id
    assert entry["local"] is True
    assert entry["local_verified"] is True
    assert entry["contents"] == ["db", "uploads"]
    assert entry["s3"] is False

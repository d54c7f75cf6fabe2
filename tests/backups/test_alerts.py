"""Backup alerts: mailed to ADMINS once when a condition starts and once when it clears, shown red
in the admin and as a warning in /readyz (whose status code backups never change)."""

import contextlib
import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from celery.schedules import crontab
from django.core import mail

from shop import celery_app
from shop.backups import alerts, local, status
from shop.backups.errors import BackupError
from shop.backups.manifest import MANIFEST_NAME
from shop.backups.schedule import longest_gap
from shop.backups.tasks import check_backup_alerts, scheduled_backup, upload_backup_set, verify_latest_set
from tests.backups.conftest import backup_now, make_old

pytestmark = pytest.mark.django_db(transaction=True)

OPS = ("Ops Team", "ops@example.com")


@pytest.fixture(autouse=True)
def admins(settings):
    settings.ADMINS = [OPS]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return settings.ADMINS


@contextlib.contextmanager
def table_locked(settings, table: str = "catalog_product"):
    """Another session holds an ACCESS EXCLUSIVE lock: pg_dump cannot read the table."""
    db = settings.DATABASES["default"]
    conn = psycopg.connect(dbname=db["NAME"], host=db["HOST"], port=db["PORT"], user=db["USER"])
    conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    try:
        yield
    finally:
        conn.rollback()
        conn.close()


def mailed() -> list:
    """The mails to the admins (shop_data's orders mailed their customers too)."""
    return [message for message in mail.outbox if message.to == [OPS[1]]]


def subjects() -> list[str]:
    return [message.subject for message in mailed()]


def readyz(client) -> tuple[int, dict]:
    response = client.get("/readyz")
    return response.status_code, response.json()


def test_a_failed_backup_is_mailed_once_shown_and_its_recovery_mailed_once(
    shop_data, settings, client, admin_client
):
    settings.BACKUP_PG_TIMEOUT = 1
    with table_locked(settings), pytest.raises(BackupError, match="BACKUP_PG_TIMEOUT"):
        scheduled_backup.delay()

    # Mailed at once by the task, to the admins, with the error.
    [alert] = mailed()
    assert alert.subject == "[Django Shop] BACKUP ALERT: the latest backup failed"
    assert alert.to == ["ops@example.com"]
    assert "BACKUP_PG_TIMEOUT" in alert.body
    # Not again while it is still failing.
    assert check_backup_alerts.delay().get() == []
    assert len(mailed()) == 1

    # /readyz: still 200 (the shop takes orders), the backups marked as failing.
    code, body = readyz(client)
    assert code == 200
    assert body["status"] == "ok"
    assert body["backup"]["status"] == "failing"
    assert "BACKUP_PG_TIMEOUT" in body["backup"]["alerts"]["backup"]
    assert body["warnings"] == ["backups: failing"]
    # The admin's page shows it red.
    page = admin_client.get("/admin/backups/backupset/").content.decode()
    assert '<p class="errornote">Backup alert: the latest backup failed' in page

    set_id = scheduled_backup.delay().get()  # the lock is gone: the next run works

    assert subjects()[1] == "[Django Shop] Backups recovered: no longer true that the latest backup failed"
    assert check_backup_alerts.delay().get() == []
    assert len(mailed()) == 2
    code, body = readyz(client)
    assert (code, body["backup"]["status"], body["backup"]["newest_id"]) == (200, "ok", set_id)
    assert "warnings" not in body
    page = admin_client.get("/admin/backups/backupset/").content.decode()
    assert "Backup alert:" not in page
    assert "FAILING" not in page


def test_a_stale_backup_is_mailed_by_the_periodic_check_once(shop_data, client, admin_client):
    old_set = make_old(backup_now("--no-upload"), days=3)  # the daily schedule allows 48 hours
    status.record_local_check(old_set, True)

    assert check_backup_alerts.delay().get() == ["BACKUP ALERT: the newest verified backup set is too old"]
    summary = f"the newest verified set, {old_set}, is 72.0 hours old (alert beyond 48.0 hours)"
    assert summary in mailed()[0].body
    assert check_backup_alerts.delay().get() == []
    code, body = readyz(client)
    assert (code, body["status"], body["backup"]["status"]) == (200, "ok", "stale")
    assert body["warnings"] == ["backups: stale"]
    assert "is 72.0 hours old" in body["backup"]["warnings"][-1]
    page = admin_client.get("/admin/backups/backupset/").content.decode()
    assert "FAILING: the newest verified set" in page

    backup_now("--no-upload")

    assert check_backup_alerts.delay().get() == [
        "Backups recovered: no longer true that the newest verified backup set is too old"
    ]
    assert len(mailed()) == 2


def test_a_new_installation_is_stale_only_once_the_limit_has_passed_without_a_set(backup_settings):
    backup_settings.BACKUP_PATH.mkdir()
    started = datetime.now(UTC)

    assert alerts.check_and_notify(now=started) == []
    assert alerts.check_and_notify(now=started + timedelta(hours=47)) == []
    assert alerts.check_and_notify(now=started + timedelta(hours=49)) == [
        "BACKUP ALERT: the newest verified backup set is too old"
    ]
    assert "there is no verified backup set" in mailed()[0].body


def test_a_failed_drill_is_mailed_and_so_is_its_recovery(shop_data, backup_settings, client):
    set_id = backup_now("--no-upload")
    manifest_path = backup_settings.BACKUP_PATH / set_id / MANIFEST_NAME
    good_manifest = manifest_path.read_text()
    manifest = json.loads(good_manifest)
    manifest["database"]["row_counts"]["public.catalog_product"] = 0  # the restore will not match
    manifest_path.write_text(json.dumps(manifest))

    with pytest.raises(BackupError, match="row counts differ"):
        verify_latest_set.delay()

    assert subjects() == ["[Django Shop] BACKUP ALERT: the latest scheduled test restore failed"]
    assert "row counts differ" in mailed()[0].body
    assert readyz(client)[1]["backup"]["status"] == "failing"

    manifest_path.write_text(good_manifest)
    assert verify_latest_set.delay().get() == set_id

    assert subjects()[1].endswith("recovered: no longer true that the latest scheduled test restore failed")
    assert readyz(client)[1]["backup"]["status"] == "ok"


def test_a_failed_upload_is_mailed_once_despite_its_retries_and_so_is_its_recovery(
    shop_data, s3_bucket, settings, closed_port, monkeypatch
):
    s3_endpoint = settings.BACKUP_S3_ENDPOINT_URL
    settings.BACKUP_S3_ENDPOINT_URL = f"http://127.0.0.1:{closed_port}"  # S3 down
    monkeypatch.setattr(upload_backup_set, "max_retries", 2)
    # Eager mode runs the retries at once only when it does not propagate (test_robustness.py).
    monkeypatch.setitem(celery_app.conf, "task_eager_propagates", False)

    scheduled_backup.delay()  # the set is good locally; its upload fails, and its 3 retries
    [set_id] = local.local_set_ids()

    assert subjects() == ["[Django Shop] BACKUP ALERT: the latest offsite upload (S3) failed"]
    assert set_id in mailed()[0].body

    settings.BACKUP_S3_ENDPOINT_URL = s3_endpoint  # S3 back
    upload_backup_set.delay(set_id).get()
    assert check_backup_alerts.delay().get() == [
        "Backups recovered: no longer true that the latest offsite upload (S3) failed"
    ]


def test_a_mail_that_cannot_be_sent_is_tried_again_at_the_next_check(
    shop_data, settings, backup_settings, closed_port, caplog
):
    status.record_failure("backup", BackupError("pg_dump failed"), "20261128T020000Z")
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", closed_port  # no mail server there

    assert alerts.check_and_notify() == []
    assert "could not mail the backup alert" in caplog.text
    assert status.read_status()["alerts"].get("backup") is None  # not recorded as mailed

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert alerts.check_and_notify() == ["BACKUP ALERT: the latest backup failed"]
    assert status.read_status()["alerts"]["backup"]["failing"] is True


def test_without_admins_the_alert_is_logged_and_not_retried(shop_data, settings, caplog):
    settings.ADMINS = []
    status.record_failure("backup", BackupError("pg_dump failed"), "20261128T020000Z")

    assert alerts.check_and_notify() == ["BACKUP ALERT: the latest backup failed"]
    assert "DJANGO_ADMINS is empty" in caplog.text
    assert mailed() == []
    assert alerts.check_and_notify() == []


def test_the_alert_check_runs_on_the_beat_schedule_on_the_backups_queue(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["check-backup-alerts"]
    assert entry["task"] == check_backup_alerts.name
    assert entry["schedule"] == timedelta(minutes=15)
    assert entry["options"]["queue"] == "backups"  # the only worker that sees the backup volume


@pytest.mark.parametrize(
    ("expression", "gap"),
    [
        ("0 2 * * *", timedelta(days=1)),
        ("*/15 * * * *", timedelta(minutes=15)),
        ("0 2,14 * * *", timedelta(hours=12)),
        ("0 2 * * 1-5", timedelta(days=3)),  # Friday to Monday
        ("30 3 * * 0", timedelta(days=7)),
        ("0 2 1 * *", timedelta(days=31)),
    ],
)
def test_the_longest_gap_between_two_runs_of_a_schedule(expression, gap):
    minute, hour, day_of_month, month, day_of_week = expression.split()
    assert longest_gap(crontab(minute, hour, day_of_week, day_of_month, month)) == gap


def test_backup_max_age_hours_overrides_twice_the_schedule(settings):
    assert alerts.max_age() == timedelta(hours=48)
    settings.BACKUP_MAX_AGE_HOURS = 26
    assert alerts.max_age() == timedelta(hours=26)

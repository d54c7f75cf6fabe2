"""Images archived as they are stored (shop/backups/image_archive.py): the task runs after the
commit (eagerly here, as every Celery task in the tests), into the local blob store and S3."""

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shop.backups import image_archive, retention, status
from shop.backups.backup import upload_local_set
from shop.backups.progress import LoggingReporter
from shop.backups.tasks import archive_images, check_backup_alerts
from shop.catalog.models import ProductImage
from shop.catalog.services import add_product_image
from tests.backups.conftest import backup_now, image_upload, make_old
from tests.backups.test_alerts import OPS, readyz, subjects
from tests.backups.test_metrics import gauge, scrape

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def archiving(settings):
    settings.BACKUP_ARCHIVE_IMAGES = True
    settings.IMAGE_ARCHIVE_MAX_RETRIES = 0  # eager retries would run at once; the worker backs off


def stored_files(image: ProductImage, read) -> dict[str, bytes]:
    image.refresh_from_db()
    return {name: read(name) for name in image.stored_names()}


def blob_key(settings, sha256: str) -> str:
    return f"{settings.BACKUP_S3_PREFIX}/blobs/{sha256[:2]}/{sha256}"


def assert_archived(settings, s3_bucket, files: dict[str, bytes]) -> None:
    for data in files.values():
        sha256 = hashlib.sha256(data).hexdigest()
        assert (Path(settings.BACKUP_PATH) / "blobs" / sha256[:2] / sha256).read_bytes() == data
        remote = s3_bucket.get_object(Bucket=settings.BACKUP_S3_BUCKET, Key=blob_key(settings, sha256))
        assert remote["Body"].read() == data


def test_an_uploaded_image_and_its_thumbnails_are_archived_after_the_commit(
    make_product, media_root, s3_bucket, settings
):
    image = add_product_image(make_product(), image_upload("teal"))

    files = stored_files(image, lambda name: (media_root / name).read_bytes())
    assert len(files) == 3  # the image and both thumbnails
    assert_archived(settings, s3_bucket, files)
    state = image_archive.archive_status()
    assert state["pending"] == 0
    assert state["last_success_at"]


def test_in_s3_media_mode_the_bucket_objects_are_archived_server_side(
    make_product, media_bucket, s3_bucket, settings
):
    image = add_product_image(make_product(), image_upload("navy"))

    assert_archived(settings, s3_bucket, stored_files(image, media_bucket.read))


def test_with_s3_down_the_upload_succeeds_and_the_archive_catches_up(
    make_product, media_root, s3_bucket, settings, closed_port, caplog
):
    endpoint = settings.BACKUP_S3_ENDPOINT_URL
    settings.BACKUP_S3_ENDPOINT_URL = f"http://127.0.0.1:{closed_port}"

    image = add_product_image(make_product(), image_upload("olive"))  # no error for the request

    assert ProductImage.objects.filter(pk=image.pk).exists()
    assert "IMAGE ARCHIVE FAILED" in caplog.text
    state = image_archive.archive_status()
    files = stored_files(image, lambda name: (media_root / name).read_bytes())
    assert state["pending"] == 3
    assert state["last_error"]
    for data in files.values():  # the local store has them already
        sha256 = hashlib.sha256(data).hexdigest()
        assert (Path(settings.BACKUP_PATH) / "blobs" / sha256[:2] / sha256).is_file()

    settings.BACKUP_S3_ENDPOINT_URL = endpoint  # S3 is back: the task's retry succeeds
    archive_images.delay(sorted(files))

    assert_archived(settings, s3_bucket, files)
    assert image_archive.archive_status()["pending"] == 0


def test_a_backup_settles_what_the_task_could_not_archive(
    make_product, media_root, s3_bucket, settings, closed_port
):
    endpoint = settings.BACKUP_S3_ENDPOINT_URL
    settings.BACKUP_S3_ENDPOINT_URL = f"http://127.0.0.1:{closed_port}"
    image = add_product_image(make_product(), image_upload("plum"))
    assert image_archive.archive_status()["pending"] == 3
    settings.BACKUP_S3_ENDPOINT_URL = endpoint

    backup_now()  # the sweep: every image into the set, what S3 lacks uploaded

    assert_archived(settings, s3_bucket, stored_files(image, lambda name: (media_root / name).read_bytes()))
    assert image_archive.archive_status()["pending"] == 0


def test_an_image_deleted_before_the_task_ran_is_skipped(media_root, s3_bucket, settings):
    assert image_archive.archive(["products/ab/" + "ab" * 32 + ".png"]) == {}
    assert image_archive.archive_status()["pending"] == 0


def test_retention_keeps_archived_blobs_until_a_set_names_them_then_sweeps_the_unused(
    make_product, media_root, s3_bucket, settings
):
    settings.BACKUP_LOCAL_RETENTION_DAYS = settings.BACKUP_S3_RETENTION_DAYS = 7
    gone = add_product_image(make_product(), image_upload("maroon"))
    gone_files = stored_files(gone, lambda name: (media_root / name).read_bytes())
    old_set = backup_now("--no-upload")
    gone.delete()  # its files leave MEDIA_ROOT after the commit; its blobs are in old_set only
    new_set = backup_now("--no-upload")
    old_set = make_old(old_set, days=40)
    for set_id in (old_set, new_set):  # S3 gets the old set under its old ID too
        status.record_local_check(set_id, True)
        upload_local_set(set_id, LoggingReporter())
    kept = add_product_image(make_product(), image_upload("lime"))  # archived, in no set yet
    kept_files = stored_files(kept, lambda name: (media_root / name).read_bytes())

    retention.prune_now(LoggingReporter())

    assert_archived(settings, s3_bucket, kept_files)
    for data in gone_files.values():
        sha256 = hashlib.sha256(data).hexdigest()
        assert not (Path(settings.BACKUP_PATH) / "blobs" / sha256[:2] / sha256).exists()
        listed = s3_bucket.list_objects_v2(
            Bucket=settings.BACKUP_S3_BUCKET, Prefix=blob_key(settings, sha256)
        )
        assert listed["KeyCount"] == 0


def backdate_pending(minutes: int) -> None:
    """The pending files have waited this long (as if S3 had been down since)."""
    then = (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat(timespec="seconds")
    with status.updating() as current:
        waiting = current[image_archive.STATUS_KEY]["pending"]
        for name in waiting:
            waiting[name] = then


def test_an_archive_behind_is_shown_alerted_once_and_measured_and_so_is_its_recovery(
    make_product, media_root, s3_bucket, settings, closed_port, client, admin_client, mailoutbox
):
    settings.ADMINS = [OPS]
    settings.IMAGE_ARCHIVE_MAX_AGE_MINUTES = 15
    endpoint = settings.BACKUP_S3_ENDPOINT_URL
    settings.BACKUP_S3_ENDPOINT_URL = f"http://127.0.0.1:{closed_port}"
    image = add_product_image(make_product(), image_upload("coral"))
    names = sorted(stored_files(image, lambda name: (media_root / name).read_bytes()))

    # Pending, but not for long yet: shown, not an alert.
    code, body = readyz(client)
    assert (code, body["status"]) == (200, "ok")
    assert body["image_archive"]["status"] == "ok"
    assert body["image_archive"]["pending"] == 3
    assert check_backup_alerts.delay().get() == []

    backdate_pending(minutes=20)
    code, body = readyz(client)
    assert (code, body["status"]) == (200, "ok")  # the shop still takes orders
    report = body["image_archive"]
    assert report["status"] == "behind"
    assert report["pending"] == 3
    assert 20 * 60 <= report["oldest_pending_age_seconds"] < 21 * 60
    assert report["max_age_seconds"] == 15 * 60
    assert str(closed_port) in report["last_error"]
    assert "image_archive" in body["backup"]["alerts"]

    alert = "[Django Shop] BACKUP ALERT: stored images are waiting to be archived"
    assert check_backup_alerts.delay().get() == [alert.removeprefix("[Django Shop] ")]
    assert check_backup_alerts.delay().get() == []  # once per change
    assert subjects() == [alert]
    assert "3 image file(s) waiting" in mailoutbox[-1].body

    samples = scrape(client)
    assert gauge(samples, "image_archive_pending") == 3
    assert gauge(samples, "image_archive_oldest_pending_age_seconds") >= 20 * 60
    assert gauge(samples, "image_archive_max_age_seconds") == 15 * 60
    assert gauge(samples, "alert", alert="image_archive") == 1
    page = admin_client.get("/admin/backups/backupset/").content.decode()
    assert "BEHIND: 3 image file(s) waiting" in page

    settings.BACKUP_S3_ENDPOINT_URL = endpoint  # S3 is back: the task's retry catches up
    before = datetime.now(UTC).replace(microsecond=0).timestamp()
    archive_images.delay(names)

    code, body = readyz(client)
    assert code == 200
    assert body["image_archive"]["status"] == "ok"
    assert body["image_archive"]["pending"] == 0
    assert "image_archive" not in body["backup"]["alerts"]
    recovered = "Backups recovered: no longer true that stored images are waiting to be archived"
    assert check_backup_alerts.delay().get() == [recovered]
    assert check_backup_alerts.delay().get() == []
    assert subjects() == [alert, f"[Django Shop] {recovered}"]
    samples = scrape(client)
    assert gauge(samples, "image_archive_pending") == 0
    assert gauge(samples, "image_archive_last_success_timestamp_seconds") >= before
    assert gauge(samples, "alert", alert="image_archive") == 0
    page = admin_client.get("/admin/backups/backupset/").content.decode()
    assert "every stored image is archived" in page
    assert "BEHIND" not in page

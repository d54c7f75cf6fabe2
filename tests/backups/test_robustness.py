"""Killed backups, concurrent backups, S3 outages, retention and the beat schedule."""

import hashlib
import json
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from subprocess import DEVNULL, PIPE

import pytest
from celery.beat import Scheduler
from celery.result import EagerResult
from django.core.management.base import CommandError

from shop import celery_app
from shop.backups import local, retention, status
from shop.backups.backup import upload_local_set
from shop.backups.database import maintenance_connection
from shop.backups.errors import BackupError, CorruptSet
from shop.backups.lock import backup_lock, lock_key
from shop.backups.manifest import CHUNK_SIZE, MANIFEST_NAME, HashingWriter, new_set_id
from shop.backups.progress import LoggingReporter
from shop.backups.tasks import scheduled_backup, upload_backup_set, verify_latest_set
from tests.backups.conftest import backup_now, make_old, manage, run_command

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_backup_killed_halfway_leaves_nothing_valid_and_the_next_one_runs(
    shop_data, media_root, backup_settings
):
    # A large, fast-to-make (sparse) upload keeps the child busy long enough to be killed mid-set.
    with open(media_root / "products" / "large.bin", "wb") as big:
        big.truncate(1536 * 1024 * 1024)
    child = manage(
        "backup_now",
        "--no-upload",
        env_overrides={},
        stdout=DEVNULL,
        stderr=DEVNULL,
    )
    deadline = time.monotonic() + 60
    archive = None
    while time.monotonic() < deadline and child.poll() is None:
        partial = list(backup_settings.BACKUP_PATH.glob(".incomplete-*/uploads.tar"))
        if partial and partial[0].stat().st_size > 50 * 1024 * 1024:
            archive = partial[0]
            break
        time.sleep(0.01)
    assert archive is not None, "the backup finished or failed before it could be killed"
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=10) == -signal.SIGKILL

    assert not (archive.parent / MANIFEST_NAME).exists()
    assert local.local_set_ids() == []
    assert "No backup sets" in "\n".join(run_command("list_backups"))
    with pytest.raises(CommandError, match="no backup set"):
        run_command("restore_backup", "--latest", "--yes")

    (media_root / "products" / "large.bin").unlink()
    set_id = backup_now("--no-upload")  # the lock died with the killed process
    assert local.local_set_ids() == [set_id]
    assert not list(backup_settings.BACKUP_PATH.glob(".incomplete-*"))  # its leftovers are gone


def test_a_second_backup_skips_while_one_runs(shop_data, caplog):
    with backup_lock("a backup already running"):
        assert scheduled_backup.delay().get() is None
        with pytest.raises(
            CommandError,
            match=r"another backup or restore is running \(shop-backups: a backup already running",
        ):
            run_command("backup_now", "--no-upload")
        with pytest.raises(CommandError, match="another backup or restore is running"):
            run_command("restore_backup", "--latest", "--yes")
    assert "scheduled backup skipped: another backup or restore is running" in caplog.text
    assert local.local_set_ids() == []
    assert backup_now("--no-upload") in local.local_set_ids()


def test_the_lock_is_free_the_moment_its_block_ends(shop_data):
    """Two commands run back to back: the second must get the lock, not find it still held by
    the first one's closing session (which ends asynchronously on the server)."""
    with maintenance_connection("lock observer") as observer:
        for _ in range(20):
            with backup_lock("back to back"):
                pass
            assert observer.execute("SELECT pg_try_advisory_lock(%s)", [lock_key()]).fetchone()[0]
            observer.execute("SELECT pg_advisory_unlock(%s)", [lock_key()])


def test_two_backup_processes_at_once_one_runs_one_skips(shop_data, media_root, backup_settings):
    with open(media_root / "products" / "large.bin", "wb") as big:
        big.truncate(1536 * 1024 * 1024)  # the first backup runs for seconds
    first = manage("backup_now", "--no-upload", env_overrides={}, stdout=PIPE, stderr=PIPE)
    deadline = time.monotonic() + 60
    while not list(backup_settings.BACKUP_PATH.glob(".incomplete-*")) and time.monotonic() < deadline:
        time.sleep(0.01)  # the first one holds the lock once it writes its set

    second = manage("backup_now", "--no-upload", env_overrides={}, stdout=PIPE, stderr=PIPE)
    _, second_err = second.communicate(timeout=60)
    assert first.poll() is None, "the first backup ended before the second started: test inconclusive"
    _, first_err = first.communicate(timeout=120)

    assert (first.returncode, second.returncode) == (0, 1), first_err.decode()
    assert "another backup or restore is running (shop-backups: backup" in second_err.decode()
    assert "Traceback" not in second_err.decode()
    assert len(local.local_set_ids()) == 1


def test_s3_unreachable_keeps_the_local_set_marks_it_not_offsite_and_retries(
    shop_data, s3_bucket, backup_settings, closed_port, monkeypatch
):
    s3_endpoint = backup_settings.BACKUP_S3_ENDPOINT_URL
    backup_settings.BACKUP_S3_ENDPOINT_URL = f"http://127.0.0.1:{closed_port}"
    monkeypatch.setattr(upload_backup_set, "max_retries", 2)
    # Eager mode runs each retry at once instead of after the backoff, but only when it does not
    # propagate exceptions (it would raise the first Retry instead of running it).
    monkeypatch.setitem(celery_app.conf, "task_eager_propagates", False)

    scheduled_backup.delay()

    [set_id] = local.local_set_ids()
    record = status.read_status()["sets"][set_id]
    assert record["local_verified"] is True
    assert record["offsite"]["verified"] is False
    assert record["offsite"]["attempts"] == 1 + 1 + 2  # in the backup, then the task and its 2 retries
    assert status.read_status()["last_failure"]["stage"] == "upload"
    assert "NOT OFFSITE" in "\n".join(run_command("list_backups", "--source", "local"))

    backup_settings.BACKUP_S3_ENDPOINT_URL = s3_endpoint  # S3 is back
    assert upload_backup_set.delay(set_id).get() == set_id
    assert status.read_status()["sets"][set_id]["offsite"]["verified"] is True
    listing = json.loads("\n".join(run_command("list_backups", "--json")))
    assert listing[0]["s3_intact"] is True


def test_retention_keeps_the_newest_verified_set_when_everything_is_old(shop_data, s3_bucket, settings):
    made = [backup_now("--no-upload") for _ in range(3)]
    ids = [make_old(set_id, days) for set_id, days in zip(made, (40, 35, 31), strict=True)]
    oldest, verified, corrupt = ids
    status.record_local_check(oldest, True)
    status.record_local_check(verified, True)
    status.record_local_check(corrupt, False, "flipped byte")
    for set_id in ids:
        upload_local_set(set_id, LoggingReporter())
    settings.BACKUP_LOCAL_RETENTION_DAYS = 7
    settings.BACKUP_S3_RETENTION_DAYS = 30

    deleted = retention.prune(LoggingReporter())

    assert deleted["local"] == [oldest, corrupt]
    assert local.local_set_ids() == [verified]
    # On S3 all three are intact, so the newest of them stays.
    assert deleted["s3"] == [oldest, verified]
    assert [
        info["id"] for info in json.loads("\n".join(run_command("list_backups", "--source", "s3", "--json")))
    ] == [corrupt]


def test_retention_never_deletes_the_last_set_even_unverified(settings):
    now = datetime.now(UTC)
    ancient = [new_set_id(now - timedelta(days=d)) for d in (90, 60)]
    assert retention.deletable(ancient, set(), days=7, now=now) == [ancient[0]]
    assert retention.deletable(ancient, {ancient[0]}, days=7, now=now) == [ancient[1]]
    assert retention.deletable([], set(), days=7, now=now) == []


def test_the_beat_schedule_triggers_the_backup_task(shop_data, settings):
    entry = settings.CELERY_BEAT_SCHEDULE["backup-set"]
    assert entry["schedule"] == settings.BACKUP_CRONTAB
    assert celery_app.amqp.router.route(entry["options"], entry["task"])["queue"].name == "backups"

    scheduler = Scheduler(app=celery_app, lazy=False)
    scheduled = scheduler.schedule["backup-set"]
    # As if the last run was a day ago: the daily cron entry is due, and beat's tick sends it.
    scheduled.last_run_at = datetime.now(UTC) - timedelta(days=1, minutes=1)
    scheduler.tick()

    assert len(local.local_set_ids()) == 1
    assert scheduler.schedule["backup-set"].last_run_at > datetime.now(UTC) - timedelta(minutes=1)


def test_a_local_set_damaged_before_upload_is_not_uploaded_and_marked_corrupt(
    shop_data, s3_bucket, backup_settings
):
    set_id = backup_now("--no-upload")
    archive = backup_settings.BACKUP_PATH / set_id / "uploads.tar"
    data = bytearray(archive.read_bytes())
    data[1000] ^= 0xFF
    archive.write_bytes(bytes(data))

    with pytest.raises(CorruptSet, match="no longer matches its manifest checksum"):
        upload_backup_set.delay(set_id)

    assert status.read_status()["sets"][set_id]["local_verified"] is False
    assert json.loads("\n".join(run_command("list_backups", "--source", "s3", "--json"))) == []
    assert s3_bucket.list_objects_v2(Bucket=backup_settings.BACKUP_S3_BUCKET).get("KeyCount", 0) == 0


@pytest.fixture
def backups_worker(settings):
    """A real Celery worker on the `backups` queue (Redis broker), in a thread, stopped afterwards."""
    from celery.contrib.testing.worker import start_worker

    saved = {key: celery_app.conf[key] for key in ("task_always_eager", "broker_url")}
    celery_app.conf.task_always_eager = False
    celery_app.conf.broker_url = settings.CELERY_BROKER_URL
    with celery_app.connection_for_write() as connection:
        connection.default_channel.queue_purge("backups")  # nothing left over from another run
    try:
        with start_worker(
            celery_app, queues=["backups"], pool="solo", perform_ping_check=False, loglevel="WARNING"
        ):
            yield
    finally:
        celery_app.conf.update(saved)


def test_beat_sends_the_backup_to_the_backups_queue_and_a_worker_runs_it(shop_data, backups_worker):
    scheduler = Scheduler(app=celery_app, lazy=False)
    entry = scheduler.schedule["backup-set"]
    entry.last_run_at = datetime.now(UTC) - timedelta(days=1, minutes=1)
    assert entry.is_due().is_due

    result = scheduler.apply_async(entry)  # what beat's tick() does with a due entry

    assert not isinstance(result, EagerResult)  # it went through the broker, not inline
    deadline = time.monotonic() + 60
    while not local.local_set_ids() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(local.local_set_ids()) == 1


def test_the_scheduled_test_restore_passes_a_good_set_and_flags_a_bad_one(
    shop_data, settings, backup_settings, caplog
):
    entry = settings.CELERY_BEAT_SCHEDULE["verify-latest-set"]
    assert celery_app.amqp.router.route(entry["options"], entry["task"])["queue"].name == "backups"
    set_id = backup_now("--no-upload")

    assert verify_latest_set.delay().get() == set_id
    assert status.read_status()["last_test_restore"]["id"] == set_id

    manifest_path = backup_settings.BACKUP_PATH / set_id / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    manifest["database"]["row_counts"]["public.catalog_product"] = 0
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BackupError, match="row counts differ"):
        verify_latest_set.delay()
    failure = status.read_status()["last_failure"]
    assert (failure["stage"], failure["id"]) == ("verify", set_id)
    assert status.read_status()["sets"][set_id]["local_verified"] is False
    verify_failed = [r for r in caplog.records if r.getMessage().startswith("BACKUP VERIFY FAILED")]
    assert "row counts differ" in verify_failed[0].getMessage()
    assert verify_failed[0].exc_info is None  # an expected failure: one line, no traceback


def test_hashing_writer_hashes_every_byte_in_order(tmp_path):
    """The SHA-256 is computed in a thread beside the writes; it must still cover exactly the
    bytes written, in order, also when a caller reuses its buffer right after writing it."""
    reused = bytearray(b"x" * 1000)
    pieces = [os.urandom(CHUNK_SIZE) for _ in range(40)] + [b"", b"tail"]
    expected = hashlib.sha256()
    with open(tmp_path / "out", "wb") as raw, HashingWriter(raw) as writer:
        for piece in pieces:
            writer.write(piece)
            expected.update(piece)
            writer.write(reused)
            expected.update(reused)
            reused[:4] = os.urandom(4)  # changed after the write: the hash must not see this
    assert writer.hexdigest() == expected.hexdigest()
    assert writer.size == (tmp_path / "out").stat().st_size == sum(map(len, pieces)) + 1000 * len(pieces)
    assert hashlib.sha256((tmp_path / "out").read_bytes()).hexdigest() == expected.hexdigest()

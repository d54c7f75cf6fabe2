"""Celery tasks on the `backups` queue (routed in settings): the scheduled backup and upload retries.

Each has a soft and a hard time limit in hours (BACKUP_TASK_SOFT_TIME_LIMIT, BACKUP_TASK_TIME_LIMIT),
instead of the quick tasks' defaults: a big shop's dump or upload takes hours, but never forever.
"""

import logging

from django.conf import settings

from shop.backups import alerts, image_archive, local, status
from shop.backups.backup import run_backup, upload_with_lock
from shop.backups.errors import BackupBusy, BackupError, OffsiteError
from shop.backups.progress import LoggingReporter
from shop.backups.verify import verify_set
from shop.celery import app

logger = logging.getLogger("shop.backups")

UPLOAD_RETRY_BACKOFF = 60  # seconds before the first retry; doubles up to UPLOAD_RETRY_BACKOFF_MAX
UPLOAD_RETRY_BACKOFF_MAX = 3600
UPLOAD_MAX_RETRIES = 8  # about 4 hours of retries in all
ARCHIVE_RETRY_BACKOFF = 30  # an image archive retried after 30 s, doubling up to 10 minutes
ARCHIVE_RETRY_BACKOFF_MAX = 600
TIME_LIMITS = {
    "soft_time_limit": settings.BACKUP_TASK_SOFT_TIME_LIMIT,
    "time_limit": settings.BACKUP_TASK_TIME_LIMIT,
    # Acknowledged when they start, unlike the quick tasks (CELERY_TASK_ACKS_LATE): Redis hands
    # an unacknowledged message out again after its visibility timeout (1 h), so a backup running
    # longer would be run a second time. One killed midway is not retried: the next scheduled
    # run makes the set, and /readyz says when the newest one is too old.
    "acks_late": False,
}


@app.task(name="shop.backups.tasks.scheduled_backup", **TIME_LIMITS)
def scheduled_backup() -> str | None:
    """Run by Celery beat on BACKUP_SCHEDULE. Skips (with a log line) if a backup is running."""
    try:
        outcome = run_backup(LoggingReporter(), upload=True)
    except BackupBusy as exc:
        logger.warning("scheduled backup skipped: %s", exc)
        return None
    finally:
        _check_alerts()  # a failure is mailed now, not at the next periodic check
    if outcome.offsite is False:
        # The local set is good; only the offsite copy is missing. Retry that, not the backup.
        upload_backup_set.apply_async(args=[outcome.set_id], countdown=UPLOAD_RETRY_BACKOFF)
    return outcome.set_id


@app.task(
    name="shop.backups.tasks.upload_backup_set",
    autoretry_for=(OffsiteError, BackupBusy),
    retry_backoff=UPLOAD_RETRY_BACKOFF,
    retry_backoff_max=UPLOAD_RETRY_BACKOFF_MAX,
    retry_jitter=True,
    max_retries=UPLOAD_MAX_RETRIES,
    **TIME_LIMITS,
)
def upload_backup_set(set_id: str) -> str:
    upload_with_lock(set_id, LoggingReporter())
    return set_id


@app.task(name="shop.backups.tasks.verify_latest_set", **TIME_LIMITS)
def verify_latest_set() -> str | None:
    """Run by Celery beat on BACKUP_VERIFY_SCHEDULE: a test restore of the newest local set."""
    set_ids = local.local_set_ids()
    if not set_ids:
        logger.error("BACKUP VERIFY: there is no local backup set to verify")
        return None
    set_id = set_ids[-1]
    try:
        verify_set(set_id, "local", deep=True, report=LoggingReporter())
    except BackupBusy as exc:
        logger.warning("scheduled verification skipped: %s", exc)
        return None
    except BackupError as exc:
        logger.error(
            "BACKUP VERIFY FAILED: set %s cannot be restored: %s", set_id, exc
        )  # expected: no traceback
        status.record_failure("verify", exc, set_id)
        raise
    finally:
        _check_alerts()
    logger.info("set %s passed a test restore", set_id)
    return set_id


@app.task(bind=True, name="shop.backups.tasks.archive_images")
def archive_images(self, names: list[str]) -> dict[str, str]:
    """Queued after each commit that stores image files (shop/backups/image_archive.py): a quick
    task with the quick tasks' limits, retried with backoff while the store or S3 fails."""
    try:
        return image_archive.archive(names)
    except image_archive.ArchiveFailed as exc:
        countdown = min(ARCHIVE_RETRY_BACKOFF_MAX, ARCHIVE_RETRY_BACKOFF * 2**self.request.retries)
        raise self.retry(
            exc=exc, countdown=countdown, max_retries=settings.IMAGE_ARCHIVE_MAX_RETRIES
        ) from exc


@app.task(name="shop.backups.tasks.pitr_backup", **TIME_LIMITS)
def pitr_backup(kind: str = "full") -> dict | None:
    """Run by Celery beat on PITR_FULL_SCHEDULE ("full") and PITR_DIFF_SCHEDULE ("diff"): a
    pgBackRest backup to every repository; pgBackRest then expires what retention lets go."""
    from shop.backups.pitr.pgbackrest import PitrError
    from shop.backups.pitr.physical import run_physical_backup

    try:
        return run_physical_backup(kind)
    except PitrError as exc:
        logger.error("PITR BACKUP FAILED (%s): %s", kind, exc)  # expected: no traceback
        return None
    finally:
        _check_alerts()


@app.task(name="shop.backups.tasks.check_backup_alerts")
def check_backup_alerts() -> list[str]:
    """Run by Celery beat every BACKUP_ALERT_CHECK_MINUTES: mails ADMINS when an alert starts or ends.
    A quick task (seconds), with the quick tasks' time limits: a mail server that hangs is cut off."""
    return alerts.check_and_notify()


def _check_alerts() -> None:
    # After a backup or drill: a broken alert check must not hide the task's own outcome.
    try:
        alerts.check_and_notify()
    except Exception:
        logger.exception("the backup alert check failed")

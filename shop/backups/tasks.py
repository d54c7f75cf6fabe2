"""Celery tasks on the `backups` queue (routed in settings): the scheduled backup and upload retries."""

import logging

from celery import shared_task

from shop.backups.backup import run_backup, upload_with_lock
from shop.backups.errors import BackupBusy, OffsiteError
from shop.backups.progress import LoggingReporter

logger = logging.getLogger("shop.backups")

UPLOAD_RETRY_BACKOFF = 60  # seconds before the first retry; doubles up to UPLOAD_RETRY_BACKOFF_MAX
UPLOAD_RETRY_BACKOFF_MAX = 3600
UPLOAD_MAX_RETRIES = 8  # about 4 hours of retries in all


@shared_task(name="shop.backups.tasks.scheduled_backup")
def scheduled_backup() -> str | None:
    """Run by Celery beat on BACKUP_SCHEDULE. Skips (with a log line) if a backup is running."""
    try:
        outcome = run_backup(LoggingReporter(), upload=True)
    except BackupBusy as exc:
        logger.warning("scheduled backup skipped: %s", exc)
        return None
    if outcome.offsite is False:
        # The local set is good; only the offsite copy is missing. Retry that, not the backup.
        upload_backup_set.apply_async(args=[outcome.set_id], countdown=UPLOAD_RETRY_BACKOFF)
    return outcome.set_id


@shared_task(
    name="shop.backups.tasks.upload_backup_set",
    autoretry_for=(OffsiteError, BackupBusy),
    retry_backoff=UPLOAD_RETRY_BACKOFF,
    retry_backoff_max=UPLOAD_RETRY_BACKOFF_MAX,
    retry_jitter=True,
    max_retries=UPLOAD_MAX_RETRIES,
)
def upload_backup_set(set_id: str) -> str:
    upload_with_lock(set_id, LoggingReporter())
    return set_id

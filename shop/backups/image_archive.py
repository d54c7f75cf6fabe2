"""Images archived as they are stored: each product image and thumbnail reaches the blob store
within a minute of the commit that stored it, not at the next nightly set.

After a commit that stores image files (shop/catalog/services.py calls `schedule`), the
`archive_images` task (shop/backups/tasks.py) copies each file's bytes to the same blobs the
backup sets use (shop/backups/blobs.py): into the local store (BACKUP_PATH/blobs, written once,
encrypted with BACKUP_ENCRYPT_LOCAL, fsynced, re-read and checked against its SHA-256, or an
encrypted one against its ciphertext's), then to S3 under the same key (encrypted to
BACKUP_AGE_RECIPIENTS like every uploaded blob, an encrypted local one sent as it is; in
MEDIA_STORAGE=s3 copied server-side from the media bucket, plaintext, as the sets do:
shop/backups/media_bucket.py). Blobs are immutable and
content-addressed, so archiving twice is harmless: the task is idempotent and retried.

Failures never reach the request that stored the image (the task runs after its commit, on the
worker) and are visible: BACKUP_PATH/status.json's "image_archive" holds the time of the last
success, the names still pending and the last error (`archive_status()`), reported by
`archive_report()` on /readyz, the admin's Backups page, the metrics and the `image_archive` alert
(an image waiting longer than IMAGE_ARCHIVE_MAX_AGE_MINUTES). Every backup is the
sweep that catches what was missed: it stores every image as a blob and uploads (or copies) what
S3 lacks, and then clears the pending names its set covers (`settle_after_backup`). Each
archived blob is recorded with its time; retention keeps those archived since the oldest kept
set started (`archived_since`, shop/backups/retention.py), so they wait safely for the next set.
"""

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from botocore.exceptions import ClientError
from django.conf import settings

from shop.backups import blobs, crypto, media_bucket, s3, status
from shop.backups.errors import BackupError
from shop.backups.progress import LoggingReporter
from shop.catalog.media import name_sha256

logger = logging.getLogger("shop.backups")

STATUS_KEY = "image_archive"
NOT_FOUND = ("404", "NoSuchKey", "NotFound")


class ArchiveFailed(BackupError):
    """An image could not be archived now; the task retries, the next backup catches up."""


def enabled() -> bool:
    return settings.BACKUP_ARCHIVE_IMAGES


def schedule(names) -> None:
    """Queue the archive of these stored files; called after the commit that stored them. Never
    raises: a broker that is down must not fail a request whose data is committed already."""
    names = sorted({name for name in names if name})
    if not (enabled() and names):
        return
    from shop.backups.tasks import archive_images

    try:
        archive_images.delay(names)
    except Exception:
        logger.exception("IMAGE ARCHIVE NOT QUEUED for %s: the next backup stores them", ", ".join(names))


def archive(names: list[str]) -> dict[str, str]:
    """Archive these stored files (locally, then on S3 if configured); {name: sha256} of those
    archived (a file deleted since is skipped). ArchiveFailed, recorded in the status, if any fails."""
    _record(pending=names)
    archived = {}
    try:
        for name in names:
            sha256 = archive_one(name)
            if sha256:
                archived[name] = sha256
    except (OSError, BackupError, *s3.TRANSPORT_ERRORS) as exc:
        reason = s3.explain(exc) if isinstance(exc, s3.TRANSPORT_ERRORS) else str(exc)
        logger.error("IMAGE ARCHIVE FAILED for %s: %s (retried; the next backup catches up)", name, reason)
        _record(error=f"{name}: {reason}")
        raise ArchiveFailed(f"archiving {name} failed: {reason}") from exc
    _record(done=names, archived=archived.values())
    return archived


def archive_one(name: str) -> str | None:
    """One stored file into the local store and S3; its SHA-256, or None if it is gone."""
    try:
        sha256, size = store_locally(name)
    except FileNotFoundError:
        return None  # deleted since its commit: nothing to keep
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in NOT_FOUND:
            return None
        raise
    if s3.configured():
        store_offsite(name, sha256, size)
    return sha256


def store_locally(name: str) -> tuple[str, int]:
    """The file as a blob of the local store (unless there), checked after it is durable."""
    writer = blobs.BlobWriter()
    known = name_sha256(name)
    try:
        if known and writer.size_of(known) is not None:
            sha256, size = known, writer.size_of(known)
        elif media_bucket.active():
            sha256, size = media_bucket.stream_into_store(media_bucket.media_source(), name, writer)
        else:
            sha256, size = writer.add(Path(settings.MEDIA_ROOT) / name)
        writer.commit()  # fsync, rename, fsync
    except BaseException:
        writer.discard()
        raise
    # An encrypted blob written now is compared with the ciphertext just written (no identity here).
    if problem := blobs.blob_problem(sha256, size, stored=writer.stored.get(sha256)):
        raise ArchiveFailed(problem)
    return sha256, size


def store_offsite(name: str, sha256: str, size: int) -> None:
    """The blob on S3 under its key, unless it is there already."""
    client = s3.client()
    key = s3.blob_object_key(sha256)
    if _present(client, key):
        return
    source = media_bucket.media_source() if media_bucket.active() else None
    if source and media_bucket.shares_backup_endpoint(source):
        media_bucket.BucketBlobCopier(source, client, set()).copy_in(name, size, sha256)
        return
    s3.upload_blob(client, sha256, "images", LoggingReporter(), crypto.configured_recipients())


def _present(client, key: str) -> bool:
    try:
        client.head_object(Bucket=settings.BACKUP_S3_BUCKET, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in NOT_FOUND:
            return False
        raise
    return True


def settle_after_backup(manifest, offsite: bool | None) -> None:
    """A set that holds pending files (and is offsite, where S3 is configured) settles them."""
    if manifest.uploads is None or manifest.uploads.files is None or (s3.configured() and not offsite):
        return
    covered = {entry.path for entry in manifest.uploads.files}
    pending = set(archive_status()["pending_names"])
    if pending & covered:
        _record(done=sorted(pending & covered), by_backup=True)


def _record(pending=(), done=(), error: str = "", by_backup: bool = False, archived=()) -> None:
    with status.updating() as current:
        state = current.setdefault(STATUS_KEY, {})
        for sha256 in archived:  # for retention: these blobs stay until a set names them
            state.setdefault("blobs", {})[sha256] = status.now_iso()
        waiting = state.setdefault("pending", {})
        for name in pending:
            waiting.setdefault(name, status.now_iso())
        for name in done:
            waiting.pop(name, None)
        if done:
            state["last_success_at"] = status.now_iso()
            if by_backup:
                state["last_caught_up_by_backup_at"] = state["last_success_at"]
        if error:
            state["last_error"], state["last_error_at"] = error, status.now_iso()


def archived_since(start: datetime | None) -> set[str]:
    """The blobs archived at or after `start` (all if None); forgets those archived before it.
    Called by retention under the backup lock."""
    with status.updating() as current:
        archived = current.get(STATUS_KEY, {}).get("blobs", {})
        if start is not None:
            # Records keep whole seconds (status.now_iso): a blob archived in the second the set
            # started, after its start, must not count as older than it.
            start = start.replace(microsecond=0)
            for sha256, when in list(archived.items()):
                if datetime.fromisoformat(when) < start:
                    del archived[sha256]
        return set(archived)


def archive_status(current: dict | None = None) -> dict:
    """Last success, pending names, last error, from `current` (status.json's content) or the file."""
    state = (status.read_status() if current is None else current).get(STATUS_KEY, {})
    pending = state.get("pending", {})
    return {
        "last_success_at": state.get("last_success_at"),
        "pending": len(pending),
        "pending_names": sorted(pending),
        "oldest_pending_since": min(pending.values(), default=None),
        "last_error": state.get("last_error", ""),
        "last_error_at": state.get("last_error_at"),
    }


def max_age() -> timedelta:
    return timedelta(minutes=settings.IMAGE_ARCHIVE_MAX_AGE_MINUTES)


def archive_report(current: dict | None = None, now: datetime | None = None) -> dict:
    """For /readyz, the admin, the metrics and the alert: "behind" once an image has waited
    longer than IMAGE_ARCHIVE_MAX_AGE_MINUTES (a warning only, never a 503)."""
    state = archive_status(current)
    now = now or datetime.now(UTC)
    since = state["oldest_pending_since"]
    age = (now - datetime.fromisoformat(since)).total_seconds() if since else 0.0
    limit = max_age().total_seconds()
    if state["pending"]:
        waiting = f"{state['pending']} image file(s) waiting, the oldest for {age:.0f} s"
        summary = f"{waiting} (alert beyond {limit:.0f} s)"
        if state["last_error"]:
            summary += f"; last error at {state['last_error_at']}: {state['last_error']}"
    else:
        summary = f"every stored image is archived; last success at {state['last_success_at'] or 'never'}"
    return {
        "status": "behind" if age > limit else "ok",
        "summary": summary,
        "pending": state["pending"],
        "oldest_pending_age_seconds": round(age),
        "max_age_seconds": round(limit),
        "last_success_at": state["last_success_at"],
        "last_error": state["last_error"],
        "last_error_at": state["last_error_at"],
    }

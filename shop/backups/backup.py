"""Making a backup set: dump + uploads archive + manifest, published atomically, then offsite."""

import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from django.conf import settings

import shop
from shop.backups import crypto, local, retention, s3, status
from shop.backups.archive import write_uploads_archive
from shop.backups.database import (
    dump_compression,
    dump_snapshot,
    exported_snapshot,
    kill_process_group,
    live_database_name,
    migration_state,
    pg_timeout,
    referenced_upload_names,
    table_row_counts,
    timeout_error,
)
from shop.backups.errors import BackupError, CorruptSet, OffsiteError
from shop.backups.files import make_private_dir
from shop.backups.lock import backup_lock
from shop.backups.manifest import (
    DB_FILE,
    FORMAT_VERSION,
    MANIFEST_NAME,
    PARTS,
    UPLOADS_FILE,
    new_set_id,
    total_size,
    write_json_atomic,
)
from shop.backups.progress import human_bytes
from shop.backups.recovery import recover_interrupted_restore

logger = logging.getLogger("shop.backups")


@dataclass
class BackupOutcome:
    set_id: str
    manifest: dict
    offsite: bool | None  # None: not uploaded (--no-upload or no offsite target configured)
    offsite_error: str = ""
    offsite_configured: bool = False  # BACKUP_S3_BUCKET is set (s3.configured())


def run_backup(report, upload: bool = True, only: str | None = None) -> BackupOutcome:
    """Make one backup set; BackupBusy at once if another backup or restore is running."""
    with backup_lock("backup"):
        _recover_interrupted_restore(report)
        for name in local.remove_leftovers():
            logger.warning("removed %s, left behind by an interrupted backup or fetch", name)
        set_id = _unused_set_id()
        started = time.monotonic()
        try:
            manifest = _write_set(set_id, only, report)
        except OSError as exc:
            # ENOSPC, EACCES, EIO: the backup volume is the problem, say so in words.
            error = BackupError(
                f"writing set {set_id} to {local.backup_root()} failed: {exc.strerror or exc}. "
                "Check the backup volume (free space, permissions); the incomplete set was removed."
            )
            # Expected (a full or read-only volume): the message says it all, no traceback.
            logger.error("BACKUP FAILED: set %s was not written: %s", set_id, error)
            status.record_failure("backup", error, set_id)
            raise error from exc
        except BackupError as exc:  # expected too: a timeout, pg_dump's own error, ...
            logger.error("BACKUP FAILED: set %s was not written: %s", set_id, exc)
            status.record_failure("backup", exc, set_id)
            raise
        except Exception as exc:  # a bug: the traceback is what helps
            logger.exception("BACKUP FAILED: set %s was not written", set_id)
            status.record_failure("backup", exc, set_id)
            raise
        status.record_success(set_id, round(time.monotonic() - started, 3), total_size(manifest))
        outcome = BackupOutcome(set_id, manifest, offsite=None, offsite_configured=s3.configured())
        if upload and outcome.offsite_configured:
            try:
                upload_local_set(set_id, report)
                outcome.offsite = True
            except OffsiteError as exc:
                outcome.offsite, outcome.offsite_error = False, str(exc)
        # S3 is left alone when the run was local only (--no-upload), and while it is failing:
        # pruning it would only fail again and hide the upload error in the status.
        _prune(report, include_s3=upload and outcome.offsite is not False)
        return outcome


def _recover_interrupted_restore(report) -> None:
    """A restore killed halfway is finished or undone before anything is backed up: a half-swapped
    database and uploads must never become a set. If that fails, so does the backup."""
    try:
        recover_interrupted_restore(report)
    except BackupError as exc:
        logger.error("BACKUP FAILED: an interrupted restore could not be recovered: %s", exc)
        status.record_failure("backup", exc)
        raise


def _unused_set_id() -> str:
    # IDs have one-second resolution; two quick backups in a row must not share one.
    while True:
        set_id = new_set_id()
        if not local.set_dir(set_id).exists():
            return set_id
        time.sleep(0.2)


def _write_set(set_id: str, only: str | None, report) -> dict:
    started_at = datetime.now(UTC)
    recipients = crypto.configured_recipients()  # a mistyped key fails the backup before it starts
    incomplete = local.backup_root() / f"{local.INCOMPLETE_PREFIX}{set_id}"
    make_private_dir(incomplete)
    manifest = {
        "format": FORMAT_VERSION,
        "id": set_id,
        "started_at": started_at.isoformat(),
        "app_version": shop.__version__,
        "contents": [only] if only else list(PARTS),
        "files": {},
    }
    try:
        if only == "uploads":
            _archive_uploads(incomplete, manifest, report, referenced=None)
        else:
            with exported_snapshot() as snapshot:
                _dump_and_archive(snapshot, incomplete, manifest, report, with_uploads=only is None)
        manifest["finished_at"] = datetime.now(UTC).isoformat()
        write_json_atomic(incomplete / MANIFEST_NAME, manifest)
        if settings.BACKUP_ENCRYPT_LOCAL:
            report.step(f"Encrypting set {set_id} on disk (age) ...")
            crypto.seal_set_dir(incomplete, manifest, recipients)
        local.publish(incomplete, set_id)
    except BaseException:
        shutil.rmtree(incomplete, ignore_errors=True)
        raise
    # The checksums were computed over the very bytes written and the files are fsynced;
    # reading them back now would only read the page cache. verify_backup re-reads for real.
    status.record_local_check(set_id, True)
    return manifest


def _dump_and_archive(snapshot, incomplete: Path, manifest: dict, report, with_uploads: bool) -> None:
    """pg_dump runs in a thread while the uploads are archived: the two overlap instead of adding up."""
    report.step(f"Dumping database {live_database_name()} ...")
    running = []  # the pg_dump process, to stop it if anything here fails (or a time limit strikes)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg_dump") as pool:
        compression = dump_compression(snapshot.pg_dump_version)
        dump = pool.submit(dump_snapshot, snapshot.id, incomplete / DB_FILE, running.append, compression)
        try:
            # While pg_dump runs: what the manifest says about the same snapshot.
            row_counts, migrations = table_row_counts(snapshot.conn), migration_state(snapshot.conn)
            if with_uploads:
                _archive_uploads(incomplete, manifest, report, referenced_upload_names(snapshot.conn))
            sha256, size = dump.result()
        except BaseException as exc:
            for process in running:
                kill_process_group(process)
            if isinstance(exc, psycopg.errors.QueryCanceled):  # our statement_timeout: a lock, most likely
                raise timeout_error("reading the database snapshot beside pg_dump", pg_timeout()) from exc
            raise
    report.step(f"  database dump: {human_bytes(size)}")
    manifest["files"][DB_FILE] = {"size": size, "sha256": sha256}
    manifest["database"] = {
        "name": live_database_name(),
        "server_version": snapshot.server_version,
        "pg_dump_version": snapshot.pg_dump_version,
        "dump_compression": compression or "default",
        "migrations": migrations,
        "row_counts": row_counts,
    }


def _archive_uploads(incomplete: Path, manifest: dict, report, referenced: set[str] | None) -> None:
    report.step(f"Archiving uploads from {settings.MEDIA_ROOT} ...")
    archive = write_uploads_archive(Path(settings.MEDIA_ROOT), incomplete / UPLOADS_FILE, report, referenced)
    manifest["files"][UPLOADS_FILE] = {"size": archive.size, "sha256": archive.sha256}
    manifest["uploads"] = {"file_count": archive.file_count, "bytes": archive.file_bytes}
    if referenced is not None:
        # What is left was named by a row in the dump but not found on disk: most likely deleted
        # after the snapshot (its row is gone from the live database too). Recorded, not fatal.
        manifest["uploads"]["referenced_but_missing"] = sorted(referenced)
        if referenced:
            logger.warning(
                "set %s: %d upload(s) named in the dump were not on disk: %s",
                manifest["id"],
                len(referenced),
                ", ".join(sorted(referenced)[:10]),
            )


def upload_local_set(set_id: str, report) -> None:
    """Copy a local set to S3 and record the result; OffsiteError (recorded) if S3 fails."""
    report.step(f"Uploading set {set_id} to {s3.describe_target()} ...")
    try:
        s3.upload_set(local.set_dir(set_id), local.local_summary(set_id), report)
    except OffsiteError as exc:
        logger.error("BACKUP NOT OFFSITE: set %s is kept locally only: %s", set_id, exc)
        status.record_offsite(set_id, False, str(exc))
        status.record_failure("upload", exc, set_id)
        raise
    except CorruptSet as exc:  # the local copy changed since it was written
        logger.error("BACKUP CORRUPT: set %s: %s", set_id, exc)
        status.record_local_check(set_id, False, str(exc))
        status.record_failure("upload", exc, set_id)
        raise
    status.record_offsite(set_id, True)
    report.step(f"Set {set_id} is offsite (checksums verified by S3).")


def upload_with_lock(set_id: str, report) -> None:
    """Upload a set outside a backup run (the retry task), never alongside one."""
    with backup_lock("upload"):
        upload_local_set(set_id, report)


def _prune(report, include_s3: bool) -> None:
    try:
        retention.prune(report, include_s3=include_s3)
    except (BackupError, OSError) as exc:  # a failed prune must not turn a good backup into a failed one
        logger.error("BACKUP RETENTION FAILED: %s", exc)
        status.record_failure("retention", exc)
    except Exception as exc:
        logger.exception("BACKUP RETENTION FAILED")
        status.record_failure("retention", exc)

"""Making a backup set: dump + new upload blobs + small uploads archive + manifest, published
atomically, then offsite (the blobs S3 lacks, the set's files, the manifest last)."""

import logging
import shutil
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from django.conf import settings

import shop
from shop.backups import blobs, crypto, image_archive, local, media_bucket, retention, s3, status
from shop.backups.archive import MediaEntry, media_entries, write_uploads_archive
from shop.backups.database import (
    dump_compression,
    dump_snapshot,
    exported_snapshot,
    kill_process_group,
    live_database_name,
    migration_state,
    pg_timeout,
    table_row_counts,
    timeout_error,
)
from shop.backups.errors import BackupError, CorruptSet, OffsiteError
from shop.backups.files import make_private_dir
from shop.backups.lock import backup_lock
from shop.backups.manifest import (
    DB_FILE,
    PARTS,
    STORED_IN_BLOB,
    UPLOADS_FILE,
    DatabaseInfo,
    FileEntry,
    Manifest,
    UploadFile,
    UploadsInfo,
    new_set_id,
    write_manifest,
)
from shop.backups.progress import human_bytes
from shop.backups.recovery import recover_interrupted_restore
from shop.catalog.media import is_immutable, name_sha256, referenced_media_names

logger = logging.getLogger("shop.backups")

COPY_THREADS = 2  # new blobs are copied two at a time: reads, writes and hashlib release the GIL


@dataclass
class BackupOutcome:
    set_id: str
    manifest: Manifest
    offsite: bool | None  # None: not uploaded (--no-upload or no offsite target configured)
    offsite_error: str = ""
    offsite_configured: bool = False  # BACKUP_S3_BUCKET is set (s3.configured())


def run_backup(report, upload: bool = True, only: str | None = None) -> BackupOutcome:
    """Make one backup set; BackupBusy at once if another backup or restore is running."""
    with backup_lock("backup"):
        _recover_interrupted_restore(report)
        for name in local.remove_leftovers() + blobs.remove_leftovers():
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
        status.record_success(set_id, round(time.monotonic() - started, 3), manifest.total_size())
        outcome = BackupOutcome(set_id, manifest, offsite=None, offsite_configured=s3.configured())
        if upload and outcome.offsite_configured:
            try:
                upload_local_set(set_id, report)
                outcome.offsite = True
            except OffsiteError as exc:
                outcome.offsite, outcome.offsite_error = False, str(exc)
        # S3 is left alone when the run was local only (--no-upload), and while it is failing:
        # pruning it would only fail again and hide the upload error in the status.
        # The new set's manifest is known: retention reads only the other sets' (~10 ms each).
        _prune(report, include_s3=upload and outcome.offsite is not False, known={set_id: manifest.to_json()})
        image_archive.settle_after_backup(manifest, outcome.offsite)  # the sweep of missed images
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


def _write_set(set_id: str, only: str | None, report) -> Manifest:
    started_at = datetime.now(UTC)
    recipients = crypto.configured_recipients()  # a mistyped key fails the backup before it starts
    incomplete = local.backup_root() / f"{local.INCOMPLETE_PREFIX}{set_id}"
    make_private_dir(incomplete)
    manifest = Manifest(
        id=set_id,
        started_at=started_at.isoformat(),
        app_version=shop.__version__,
        contents=[only] if only else list(PARTS),
    )
    blob_writer = blobs.BlobWriter() if only != "db" else None
    try:
        if only == "uploads":
            _back_up_uploads(incomplete, manifest, blob_writer, report, referenced=None)
        else:
            with exported_snapshot() as snapshot:
                _dump_and_back_up_uploads(snapshot, incomplete, manifest, blob_writer, report)
        if blob_writer:
            blob_writer.commit()  # durable and in place before the manifest that names them
        manifest.finished_at = datetime.now(UTC).isoformat()
        write_manifest(incomplete, manifest)
        if settings.BACKUP_ENCRYPT_LOCAL:
            report.step(f"Encrypting set {set_id} on disk (age) ...")
            stored_blobs = blob_writer.stored_records(manifest.blobs()) if blob_writer else {}
            crypto.seal_set_dir(incomplete, manifest.to_json(), recipients, stored_blobs)
        local.publish(incomplete, set_id)
    except BaseException:
        if blob_writer:
            blob_writer.discard()
        shutil.rmtree(incomplete, ignore_errors=True)
        raise
    # The checksums were computed over the very bytes written and the files are fsynced;
    # reading them back now would only read the page cache. verify_backup re-reads for real.
    status.record_local_check(set_id, True)
    return manifest


def _dump_and_back_up_uploads(snapshot, incomplete: Path, manifest: Manifest, blob_writer, report) -> None:
    """pg_dump runs in a thread while the uploads are stored: the two overlap instead of adding up."""
    report.step(f"Dumping database {live_database_name()} ...")
    running = []  # the pg_dump process, to stop it if anything here fails (or a time limit strikes)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg_dump") as pool:
        compression = dump_compression(snapshot.pg_dump_version)
        dump = pool.submit(dump_snapshot, snapshot.id, incomplete / DB_FILE, running.append, compression)
        try:
            # While pg_dump runs: what the manifest says about the same snapshot.
            row_counts, migrations = table_row_counts(snapshot.conn), migration_state(snapshot.conn)
            if blob_writer:
                referenced = referenced_media_names(snapshot.conn)
                _back_up_uploads(incomplete, manifest, blob_writer, report, referenced)
            sha256, size = dump.result()
        except BaseException as exc:
            for process in running:
                kill_process_group(process)
            if isinstance(exc, psycopg.errors.QueryCanceled):  # our statement_timeout: a lock, most likely
                raise timeout_error("reading the database snapshot beside pg_dump", pg_timeout()) from exc
            raise
    report.step(f"  database dump: {human_bytes(size)}")
    manifest.files[DB_FILE] = FileEntry(size, sha256)
    manifest.database = DatabaseInfo(
        name=live_database_name(),
        server_version=snapshot.server_version,
        pg_dump_version=snapshot.pg_dump_version,
        migrations=migrations,
        row_counts=row_counts,
        dump_compression=compression or "default",
    )


def _back_up_uploads(
    incomplete: Path, manifest: Manifest, blob_writer, report, referenced: set[str] | None
) -> None:
    """Files the catalog never changes under their name go to the blob store (only the new
    ones are written); the rest, with the directories, into the set's small uploads archive."""
    known = _previous_upload_files()
    if media_bucket.active():  # MEDIA_STORAGE=s3: the bucket's objects, copied inside S3
        stored, to_archive = media_bucket.back_up_objects(blob_writer, known, report), []
    else:
        stored, to_archive = _back_up_media_root(blob_writer, known, report)
    archive = write_uploads_archive(to_archive, incomplete / UPLOADS_FILE, report)
    files = sorted(stored + archive.files, key=lambda upload: upload.path)
    manifest.files[UPLOADS_FILE] = FileEntry(archive.size, archive.sha256)
    manifest.uploads = UploadsInfo(
        file_count=len(files), bytes=sum(upload.size for upload in files), files=files
    )
    report.step(
        f"  uploads: {len(files)} files ({human_bytes(manifest.uploads.bytes)}); "
        f"{len(blob_writer.pending)} new blob(s) ({human_bytes(blob_writer.new_bytes)}), "
        f"{archive.file_count} file(s) in the archive"
    )
    if referenced is not None:
        # What is left was named by a row in the dump but not found on disk: most likely deleted
        # after the snapshot (its row is gone from the live database too). Recorded, not fatal.
        missing = sorted(referenced - {upload.path for upload in files})
        manifest.uploads.referenced_but_missing = missing
        if missing:
            logger.warning(
                "set %s: %d upload(s) named in the dump were not on disk: %s",
                manifest.id,
                len(missing),
                ", ".join(missing[:10]),
            )


def _back_up_media_root(blob_writer, known: dict[str, UploadFile], report) -> tuple[list, list]:
    """(manifest entries of the immutable files, stored as blobs; the other entries to archive)."""
    media_root = Path(settings.MEDIA_ROOT)
    report.step(f"Backing up uploads from {media_root} ...")
    stored, to_archive, copies = [], [], []
    with (
        report.track("uploads", None) as advance,
        ThreadPoolExecutor(COPY_THREADS, thread_name_prefix="store-blob") as pool,
    ):
        try:
            for entry in media_entries(media_root) if media_root.is_dir() else ():
                if entry.is_dir or not is_immutable(entry.name):
                    to_archive.append(entry)
                    continue
                sha256 = _stored_sha256(entry, blob_writer, known.get(entry.name))
                if sha256:
                    stored.append(_upload_file(entry, sha256))
                else:  # copied (and hashed on the way) beside the walk, two files at a time
                    copies.append((entry, pool.submit(blob_writer.add, entry.path, advance)))
            for entry, copy in copies:
                upload = _copied_upload(entry, copy, report)
                if upload:
                    stored.append(upload)
        except BaseException:
            pool.shutdown(cancel_futures=True)  # the copies still queued; the caller discards the rest
            raise
    return stored, to_archive


def _stored_sha256(entry: MediaEntry, blob_writer, previous: UploadFile | None) -> str | None:
    """The SHA-256 of an immutable file whose bytes the store holds already, or None (copy it).

    Its bytes are read only when the store lacks them: an image's name states its SHA-256, and
    a thumbnail unchanged since the previous set (same size and mtime) has the hash listed there;
    either is taken only if the store holds a blob of that hash with the file's size.
    """
    named = name_sha256(entry.name)
    unchanged = previous and (previous.size, previous.mtime_ns) == (entry.size, entry.mtime_ns)
    candidates = (named, previous.sha256 if unchanged else None)
    return next(
        (sha256 for sha256 in candidates if sha256 and blob_writer.size_of(sha256) == entry.size), None
    )


def _copied_upload(entry: MediaEntry, copy, report) -> UploadFile | None:
    """The manifest entry of a file copied into the store; None if it vanished meanwhile."""
    try:
        sha256, size = copy.result()
    except FileNotFoundError:
        return None  # deleted since the walk (an image removed after its row was deleted)
    report.detail(f"{entry.name}: blob {blobs.blob_key(sha256)}")
    named = name_sha256(entry.name)
    if named and sha256 != named:
        logger.warning(
            "%s does not hold the content its name states (SHA-256 %s): backed up as it is",
            entry.name,
            sha256,
        )
    return _upload_file(entry, sha256, size)


def _upload_file(entry: MediaEntry, sha256: str, size: int | None = None) -> UploadFile:
    size = entry.size if size is None else size
    return UploadFile(entry.name, sha256, size, stat.S_IMODE(entry.mode), entry.mtime_ns, STORED_IN_BLOB)


def _previous_upload_files() -> dict[str, UploadFile]:
    """The upload files of the newest local set that lists them, by path (empty if none)."""
    for set_id in reversed(local.local_set_ids()):
        try:
            uploads = local.local_manifest(set_id).uploads
        except BackupError:
            continue
        if uploads and uploads.files is not None:
            return {upload.path: upload for upload in uploads.files}
    return {}


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


def _prune(report, include_s3: bool, known: dict[str, dict]) -> None:
    try:
        retention.prune(report, include_s3=include_s3, known=known)
    except (BackupError, OSError) as exc:  # a failed prune must not turn a good backup into a failed one
        logger.error("BACKUP RETENTION FAILED: %s", exc)
        status.record_failure("retention", exc)
    except Exception as exc:
        logger.exception("BACKUP RETENTION FAILED")
        status.record_failure("retention", exc)

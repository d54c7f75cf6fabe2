"""Checking a set: checksums against the manifest (and every blob it references), and with
`deep` a test restore of it into scratch places (shop/backups/staging.py, as a restore does).

A set encrypted on disk (BACKUP_ENCRYPT_LOCAL) is checked without the identity too, when none is
given and not `deep`: its stored files and its encrypted blobs against the sizes and SHA-256s of
their ciphertext that its plaintext index records, its plaintext blobs against their names. Any
changed byte is found that way; the plaintext checks and the test restore need the identity."""

import shutil
from pathlib import Path

from shop.backups import blobs, crypto, local, staging, status
from shop.backups.database import derived_name, drop_database, drop_scratch_databases, maintenance_connection
from shop.backups.errors import BackupError
from shop.backups.inventory import opened_set, where_to_read
from shop.backups.lock import backup_lock
from shop.backups.manifest import DB_FILE, UPLOADS_FILE, Manifest
from shop.backups.recovery import recover_interrupted_restore
from shop.backups.staging import verify_files


def verify_set(set_id: str, source: str | None, deep: bool, report, identity: str | None = None) -> list[str]:
    """What was checked, line by line; CorruptSet or BackupError when the set is not good.
    `identity`: the age identity file for an encrypted set (see shop/backups/crypto.py)."""
    if not deep and crypto.identity_file(identity) is None and where_to_read(set_id, source) == "local":
        index = crypto.read_index(local.set_dir(set_id))
        if index is not None:
            return verify_without_identity(set_id, index, report)
    opened = opened_set(set_id, source, report, identity)
    with backup_lock("verify"), opened as (directory, manifest, where, keys):
        recover_interrupted_restore(report)  # before its staging database is dropped as scratch
        drop_scratch_databases()
        try:
            report.step(f"Checking the checksums of set {set_id} ({where}) ...")
            verify_files(directory, manifest, report, keys=keys)
            checked = [f"{name}: size and SHA-256 match the manifest" for name in sorted(manifest.files)]
            if manifest.blobs():
                checked.append(f"{len(manifest.blobs())} blobs: size and SHA-256 match their names")
            if manifest.uploads and manifest.uploads.bucket_files():
                count = len(manifest.uploads.bucket_files())
                checked.append(f"{count} images in the backup bucket: size and S3's SHA-256 match")
            if deep:
                checked += test_restore(directory, manifest, report, keys)
        except BackupError as exc:
            if where == "local":
                status.record_local_check(set_id, False, str(exc))
            raise
        if where == "local":
            status.record_local_check(set_id, True)
        if deep:
            status.record_test_restore(set_id)
        return checked


def verify_without_identity(set_id: str, index: dict, report) -> list[str]:
    """Check a set encrypted on disk with what its plaintext index records; CorruptSet if a byte
    changed. Recorded as the set's local check, as a check with the identity is."""
    directory = local.set_dir(set_id)
    with backup_lock("verify"):
        report.step(f"Checking the encrypted files and blobs of set {set_id} (local, no identity) ...")
        problems = staging.stored_file_problems(directory, index, report)
        problems += blobs.blob_problems(index.get("blobs") or {}, report, stored=index.get("stored_blobs"))
        try:
            staging.raise_if_corrupt(directory, set_id, problems)
        except BackupError as exc:
            status.record_local_check(set_id, False, str(exc))
            raise
        status.record_local_check(set_id, True)
    checked = [
        f"{name}: size and SHA-256 of its ciphertext match the index" for name in sorted(index["files"])
    ]
    if index.get("blobs"):
        checked.append(
            f"{len(index['blobs'])} blobs: size and SHA-256 of the encrypted ones' ciphertext match the "
            "index, the others' match their names"
        )
    checked.append(
        "without the identity: --identity FILE also checks the plaintext (and --deep test-restores)"
    )
    return checked


def test_restore(directory: Path, manifest: Manifest, report, keys) -> list[str]:
    """Restore into scratch places (a scratch database, a scratch directory) and remove them."""
    checked = []
    if manifest.database is not None:
        scratch = derived_name(f"verify_{manifest.id}")
        report.step(f"Test restore of the dump into scratch database {scratch} ...")
        try:
            skipped = staging.stage_database(directory, manifest, scratch)
        finally:
            with maintenance_connection() as conn:
                drop_database(conn, scratch)
        tables = len(manifest.database.row_counts)
        checked.append(f"{DB_FILE}: restored into a scratch database, row counts of {tables} tables match")
        if skipped:
            names = ", ".join(skipped)
            checked.append(f"{DB_FILE}: left out extension(s) {names} (only a superuser may create them)")
    if manifest.uploads is not None and manifest.uploads.bucket_files():
        checked.append("images in the backup bucket: checked by HeadObject (no test restore into a bucket)")
    elif manifest.uploads is not None:
        scratch_dir = local.ensure_backup_root() / f"{local.SCRATCH_PREFIX}{manifest.id}"
        report.step(f"Test restore of the uploads into {scratch_dir} ...")
        try:
            count, size = staging.stage_uploads(directory, manifest, scratch_dir, report, keys)
        finally:
            shutil.rmtree(scratch_dir, ignore_errors=True)
        checked.append(f"{UPLOADS_FILE} and blobs: test restore gave {count} files ({size} bytes) as listed")
    return checked

"""Checking a set: checksums against the manifest, and with `deep` a test restore of it."""

import shutil
from pathlib import Path

from shop.backups import local, status
from shop.backups.archive import extract_uploads_archive
from shop.backups.database import (
    check_row_counts,
    create_database,
    derived_name,
    drop_database,
    drop_scratch_databases,
    maintenance_connection,
    restore_dump,
)
from shop.backups.errors import BackupError, CorruptSet
from shop.backups.files import make_private_dir
from shop.backups.inventory import opened_set
from shop.backups.lock import backup_lock
from shop.backups.manifest import DB_FILE, UPLOADS_FILE, verify_files
from shop.backups.recovery import recover_interrupted_restore


def verify_set(set_id: str, source: str | None, deep: bool, report, identity: str | None = None) -> list[str]:
    """What was checked, line by line; CorruptSet or BackupError when the set is not good.
    `identity`: the age identity file for an encrypted set (see shop/backups/crypto.py)."""
    opened = opened_set(set_id, source, report, identity)
    with backup_lock("verify"), opened as (directory, manifest, where):
        recover_interrupted_restore(report)  # before its staging database is dropped as scratch
        drop_scratch_databases()
        try:
            report.step(f"Checking the checksums of set {set_id} ({where}) ...")
            verify_files(directory, manifest, report)
            checked = [f"{name}: size and SHA-256 match the manifest" for name in sorted(manifest["files"])]
            if deep:
                checked += test_restore(directory, manifest, report)
        except BackupError as exc:
            if where == "local":
                status.record_local_check(set_id, False, str(exc))
            raise
        if where == "local":
            status.record_local_check(set_id, True)
        if deep:
            status.record_test_restore(set_id)
        return checked


def test_restore(directory: Path, manifest: dict, report) -> list[str]:
    """Restore into scratch places (a scratch database, a scratch directory) and remove them."""
    checked = []
    if DB_FILE in manifest["files"]:
        scratch = derived_name(f"verify_{manifest['id']}")
        report.step(f"Test restore of the dump into scratch database {scratch} ...")
        with maintenance_connection() as conn:
            drop_database(conn, scratch)
            create_database(conn, scratch)
        try:
            skipped = restore_dump(directory / DB_FILE, scratch)
            check_row_counts(scratch, manifest["database"]["row_counts"])
        finally:
            with maintenance_connection() as conn:
                drop_database(conn, scratch)
        tables = len(manifest["database"]["row_counts"])
        checked.append(f"{DB_FILE}: restored into a scratch database, row counts of {tables} tables match")
        if skipped:
            names = ", ".join(skipped)
            checked.append(f"{DB_FILE}: left out extension(s) {names} (only a superuser may create them)")
    if UPLOADS_FILE in manifest["files"]:
        scratch_dir = local.ensure_backup_root() / f"{local.SCRATCH_PREFIX}{manifest['id']}"
        shutil.rmtree(scratch_dir, ignore_errors=True)
        make_private_dir(scratch_dir)
        try:
            count, size = extract_uploads_archive(directory / UPLOADS_FILE, scratch_dir, report)
        finally:
            shutil.rmtree(scratch_dir, ignore_errors=True)
        check_upload_totals(manifest, count, size)
        checked.append(f"{UPLOADS_FILE}: test extraction gave {count} files ({size} bytes) as listed")
    return checked


def check_upload_totals(manifest: dict, count: int, size: int) -> None:
    expected = manifest["uploads"]
    if (count, size) != (expected["file_count"], expected["bytes"]):
        raise CorruptSet(
            f"the uploads archive holds {count} files ({size} bytes); the manifest says "
            f"{expected['file_count']} files ({expected['bytes']} bytes)."
        )

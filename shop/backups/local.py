"""Backup sets on the local backup volume (BACKUP_PATH).

A set is written into `.incomplete-<id>/` and renamed to `<id>/` only when every file and
the manifest are on disk, so a directory named like a set ID is always complete; whatever
a killed backup left behind starts with a dot and is removed by the next backup.

A set holds every customer's data, so whoever runs the backup (root in `make init` and CI,
the app user in the containers) and whatever the umask, its directories are made 0750 and
its files 0640, set explicitly after they are created; the BACKUP_PATH directory itself is
tightened to 0750 when we created it or own it.
"""

import os
import shutil
from pathlib import Path

from django.conf import settings

from shop.backups import crypto
from shop.backups.durable import fsync_directory, fsync_file
from shop.backups.errors import BackupError, CorruptSet
from shop.backups.files import PRIVATE_DIR_MODE
from shop.backups.manifest import MANIFEST_NAME, Manifest, is_set_id, read_manifest

INCOMPLETE_PREFIX = ".incomplete-"
FETCH_PREFIX = ".fetch-"
SCRATCH_PREFIX = ".scratch-"


def backup_root() -> Path:
    return Path(settings.BACKUP_PATH)


def ensure_backup_root() -> Path:
    """For writers only: readers (the probe, the admin) must not create the volume's directory."""
    root = backup_root()
    root.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    info = root.stat()
    # Tighten (never loosen) a directory we own; one owned by someone else is theirs to set.
    if info.st_uid == os.geteuid() and info.st_mode & 0o7777 & ~PRIVATE_DIR_MODE:
        os.chmod(root, info.st_mode & PRIVATE_DIR_MODE)
    return root


def set_dir(set_id: str) -> Path:
    return backup_root() / set_id


def local_set_ids() -> list[str]:
    """IDs of the complete sets on the local volume, oldest first."""
    root = backup_root()
    if not root.is_dir():
        return []
    return sorted(
        entry.name
        for entry in root.iterdir()
        if is_set_id(entry.name) and entry.is_dir() and (entry / MANIFEST_NAME).is_file()
    )


def local_manifest(set_id: str) -> Manifest:
    directory = set_dir(set_id)
    if not directory.is_dir():
        raise BackupError(f"backup set {set_id} is not in {backup_root()}.")
    return read_manifest(directory)


def local_summary(set_id: str) -> dict:
    """For listing and uploading, without any identity: the plaintext index of a set encrypted
    on disk (BACKUP_ENCRYPT_LOCAL), else its manifest (checked, as JSON)."""
    directory = set_dir(set_id)
    if not directory.is_dir():
        raise BackupError(f"backup set {set_id} is not in {backup_root()}.")
    return crypto.read_index(directory) or read_manifest(directory).to_json()


def remove_leftovers() -> list[str]:
    """Delete what killed backups and fetches left behind; call only while holding the lock."""
    removed = []
    for entry in ensure_backup_root().iterdir():
        if entry.name.startswith((INCOMPLETE_PREFIX, FETCH_PREFIX, SCRATCH_PREFIX)):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


def publish(incomplete: Path, set_id: str) -> Path:
    """Make a fully written set visible under its ID (an atomic rename on one filesystem)."""
    final = set_dir(set_id)
    if final.exists():
        raise CorruptSet(f"{final} exists already; refusing to overwrite a set.")
    for name in os.listdir(incomplete):
        fsync_file(incomplete / name)
    fsync_directory(incomplete)
    os.rename(incomplete, final)
    fsync_directory(final.parent)
    return final


def delete_local_set(set_id: str) -> None:
    # Rename first, so a half-deleted set never looks like a complete one.
    doomed = backup_root() / f"{INCOMPLETE_PREFIX}deleting-{set_id}"
    os.rename(set_dir(set_id), doomed)
    shutil.rmtree(doomed)

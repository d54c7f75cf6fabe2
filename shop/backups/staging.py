"""Checking a set and staging it beside the live data, for a restore and for a deep verify.

The restore stages into the database and directory it then swaps in; a deep verify stages into
scratch ones it removes afterwards. Both go the same way: every checksum first (the set's files
and every blob it references), then the dump into a new, empty database (row counts checked),
and the uploads into a new, empty directory (the archive extracted, the blobs linked or copied
in, totals checked), made durable. Encrypted blobs (BACKUP_ENCRYPT_LOCAL, shop/backups/blobs.py)
are decrypted with `keys` (the opened set's identities, or an identity file) for both, checked,
and copied (never hard-linked); without an identity they are refused before anything changes.
"""

import shutil
from pathlib import Path, PurePosixPath

from shop.backups import blobs, durable, media_bucket
from shop.backups.archive import extract_uploads_archive
from shop.backups.database import (
    check_row_counts,
    create_database,
    drop_database,
    maintenance_connection,
    restore_dump,
)
from shop.backups.errors import CorruptSet, UnsafeArchive
from shop.backups.files import make_private_dir
from shop.backups.manifest import DB_FILE, UPLOADS_FILE, Manifest, file_checksum


def file_problems(set_dir: Path, manifest: Manifest, report) -> list[str]:
    """Re-read every file of the set itself and compare size and SHA-256 with the manifest."""
    expected = {name: (entry.size, entry.sha256) for name, entry in manifest.files.items()}
    return _checked_files(set_dir, expected, "the manifest", report)


def stored_file_problems(set_dir: Path, index: dict, report) -> list[str]:
    """The same for a set encrypted on disk, without the identity: its stored (encrypted) files
    against the sizes and SHA-256s its plaintext index recorded (shop/backups/crypto.py)."""
    expected = {
        name: (entry["stored_size"], entry["stored_sha256"]) for name, entry in index["files"].items()
    }
    return _checked_files(set_dir, expected, "the index", report)


def _checked_files(set_dir: Path, expected: dict[str, tuple[int, str]], source: str, report) -> list[str]:
    problems = []
    for name, (size, sha256) in sorted(expected.items()):
        path = set_dir / name
        if not path.is_file():
            problems.append(f"{name} is missing")
            continue
        actual_size = path.stat().st_size
        if actual_size != size:
            problems.append(f"{name} has {actual_size} bytes, {source} says {size}")
            continue
        with report.track(f"checking {name}", size) as advance:
            digest, _ = file_checksum(path, advance)
        if digest != sha256:
            problems.append(f"{name} has SHA-256 {digest}, {source} says {sha256}")
    return problems


def verify_files(set_dir: Path, manifest: Manifest, report, include_blobs: bool = True, keys=None) -> None:
    """Every file of the set and (unless `include_blobs` is False: see verify_blobs) every blob
    it references matches the manifest, or CorruptSet (IdentityRefused: see verify_blobs)."""
    problems = file_problems(set_dir, manifest, report)
    if include_blobs:
        problems += blobs.blob_problems(manifest.blobs(), report, blobs.keys_for(manifest.blobs(), keys))
    if manifest.uploads and manifest.uploads.bucket_files():  # a media bucket's images, in the backup bucket
        problems += media_bucket.bucket_blob_problems(manifest.uploads.bucket_files())
    raise_if_corrupt(set_dir, manifest, problems)


def verify_blobs(set_dir: Path, manifest: Manifest, report, keys=None) -> None:
    """Every blob the set references matches its name and the manifest (an encrypted one once
    decrypted with `keys`), or CorruptSet; IdentityRefused if one is encrypted and no identity
    (or a file that is not one) is given."""
    keys = blobs.keys_for(manifest.blobs(), keys)
    raise_if_corrupt(set_dir, manifest, blobs.blob_problems(manifest.blobs(), report, keys))


def raise_if_corrupt(set_dir: Path, manifest: Manifest | str, problems: list[str]) -> None:
    """CorruptSet listing the problems, if any, of the set (its manifest, or its ID)."""
    if problems:
        shown = problems[:10] + ([f"and {len(problems) - 10} more"] if len(problems) > 10 else [])
        set_id = manifest if isinstance(manifest, str) else manifest.id
        raise CorruptSet(
            f"backup set {set_id} in {set_dir} is corrupt: "
            + "; ".join(shown)
            + ". Nothing was changed. Restore from another set or from the other copy (--source)."
        )


def stage_database(set_dir: Path, manifest: Manifest, dbname: str) -> list[str]:
    """The dump restored into a new database `dbname` (dropped first if left over), row counts
    checked; returns the extensions left out (see database.restore_dump)."""
    with maintenance_connection() as conn:
        drop_database(conn, dbname)
        create_database(conn, dbname)
    skipped = restore_dump(set_dir / DB_FILE, dbname)
    check_row_counts(dbname, manifest.database.row_counts)
    return skipped


def stage_uploads(set_dir: Path, manifest: Manifest, destination: Path, report, keys=None) -> tuple[int, int]:
    """The set's uploads in a new directory `destination` (removed first if left over), made
    durable; (file count, bytes). The blobs must have been checked (verify_files), with `keys`."""
    keys = blobs.keys_for(manifest.blobs(), keys)
    shutil.rmtree(destination, ignore_errors=True)
    make_private_dir(destination)
    count, size = extract_uploads_archive(set_dir / UPLOADS_FILE, destination, report)
    blob_files = manifest.uploads.blob_files()
    if blob_files:
        link = blobs.same_filesystem(blobs.store_root(), destination)
        how = "hard-linked from" if link else "copied from (another filesystem)"
        decrypted = "; the encrypted ones decrypted, never linked" if keys else ""
        report.detail(f"{len(blob_files)} upload files {how} the blob store {blobs.store_root()}{decrypted}")
        with report.track("placing blobs", sum(entry.size for entry in blob_files)) as advance:
            for entry in blob_files:
                target = destination.joinpath(*safe_parts(entry.path))
                target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                try:
                    blobs.place(entry, target, link, keys)
                except FileExistsError as exc:
                    raise UnsafeArchive(
                        f"the manifest lists {entry.path} twice, or also in the archive"
                    ) from exc
                count += 1
                size += entry.size
                advance(entry.size)
    check_upload_totals(manifest, count, size)
    durable.flush_to_disk(destination)  # durable before a swap makes them live
    return count, size


def safe_parts(name: str) -> tuple[str, ...]:
    """The parts of a relative upload path, or UnsafeArchive if placing it could escape."""
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("\\") or ".." in path.parts or not path.parts:
        raise UnsafeArchive(f"the manifest lists an upload path that leaves its directory: {name!r}")
    return path.parts


def check_upload_totals(manifest: Manifest, count: int, size: int) -> None:
    expected = manifest.uploads
    if (count, size) != (expected.file_count, expected.bytes):
        raise CorruptSet(
            f"the staged uploads are {count} files ({size} bytes); the manifest says "
            f"{expected.file_count} files ({expected.bytes} bytes)."
        )

"""The manifest of a backup set: what it holds, and the checksums that prove it.

Like pgBackRest, every file of a set is listed with its size and SHA-256, computed while the
file was written, and checked again before anything is restored from it.
"""

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from shop.backups.errors import CorruptSet

FORMAT_VERSION = 1
SET_ID_FORMAT = "%Y%m%dT%H%M%SZ"
MANIFEST_NAME = "manifest.json"
DB_FILE = "db.dump"
UPLOADS_FILE = "uploads.tar"
PARTS = {"db": DB_FILE, "uploads": UPLOADS_FILE}
CHUNK_SIZE = 1024 * 1024


def new_set_id(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime(SET_ID_FORMAT)


def set_time(set_id: str) -> datetime:
    """The UTC time a set was started, from its ID; ValueError if it is not a set ID."""
    return datetime.strptime(set_id, SET_ID_FORMAT).replace(tzinfo=UTC)


def is_set_id(name: str) -> bool:
    try:
        set_time(name)
    except ValueError:
        return False
    return True


class HashingWriter:
    """A write-only file wrapper that hashes and counts what passes through it."""

    def __init__(self, raw):
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self):
        self.raw.flush()

    def tell(self) -> int:
        return self.size


def file_checksum(path: Path, advance=None) -> tuple[str, int]:
    """(SHA-256 hex, size) of a file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
            if advance:
                advance(len(chunk))
    return digest.hexdigest(), size


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON so that readers see the old file or the whole new one, never half."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temporary, "w") as out:
        json.dump(data, out, indent=2, sort_keys=True)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def read_manifest(set_dir: Path) -> dict:
    path = set_dir / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise CorruptSet(f"{path} is missing: the set is incomplete. Use another set.") from None
    except ValueError as exc:
        raise CorruptSet(f"{path} is not valid JSON ({exc}). Use another set.") from None
    if manifest.get("format") != FORMAT_VERSION or not isinstance(manifest.get("files"), dict):
        raise CorruptSet(f"{path} is not a format-{FORMAT_VERSION} backup manifest.")
    return manifest


def total_size(manifest: dict) -> int:
    return sum(entry["size"] for entry in manifest["files"].values())


def verify_files(set_dir: Path, manifest: dict, report) -> None:
    """Re-read every file of the set and compare size and SHA-256 with the manifest."""
    problems = []
    for name, expected in sorted(manifest["files"].items()):
        path = set_dir / name
        if not path.is_file():
            problems.append(f"{name} is missing")
            continue
        actual_size = path.stat().st_size
        if actual_size != expected["size"]:
            problems.append(f"{name} has {actual_size} bytes, the manifest says {expected['size']}")
            continue
        with report.track(f"checking {name}", expected["size"]) as advance:
            digest, _ = file_checksum(path, advance)
        if digest != expected["sha256"]:
            problems.append(f"{name} has SHA-256 {digest}, the manifest says {expected['sha256']}")
    if problems:
        raise CorruptSet(
            f"backup set {manifest['id']} in {set_dir} is corrupt: "
            + "; ".join(problems)
            + ". Nothing was changed. Restore from another set or from the other copy (--source)."
        )

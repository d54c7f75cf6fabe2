"""The manifest of a backup set: what it holds, and the checksums that prove it.

Like pgBackRest, every file of a set is listed with its size and SHA-256, computed while the
file was written, and checked again before anything is restored from it.
"""

import ctypes
import hashlib
import json
import os
import queue
import threading
from datetime import UTC, datetime
from pathlib import Path

from shop.backups.errors import CorruptSet
from shop.backups.files import create_private_file

FORMAT_VERSION = 1
SET_ID_FORMAT = "%Y%m%dT%H%M%SZ"
MANIFEST_NAME = "manifest.json"
DB_FILE = "db.dump"
UPLOADS_FILE = "uploads.tar"
PARTS = {"db": DB_FILE, "uploads": UPLOADS_FILE}
CHUNK_SIZE = 1024 * 1024
HASH_QUEUE_DEPTH = 8  # chunks of up to CHUNK_SIZE waiting to be hashed
WRITEBACK_AFTER = 32 * 1024 * 1024
SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>


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
    """A write-only file wrapper that hashes and counts what passes through it; use it as a
    context manager and read `hexdigest()` after the last write.

    The SHA-256 is computed in a thread of its own (hashlib releases the GIL on buffers this
    large), so hashing overlaps with reading the source and writing instead of adding to
    them: a backup's archive thread otherwise spent about a third of its time hashing. At
    most HASH_QUEUE_DEPTH chunks wait for the hasher, so memory stays bounded. The chunks
    are hashed in the order they were written, and `bytes` cannot change while they wait.

    Every WRITEBACK_AFTER bytes the kernel is asked to start writing out what was written
    (sync_file_range, as PostgreSQL's *_flush_after settings do), so the writes reach the
    disk while we go on instead of all at the final fsync. It is only a hint: the caller's
    fsync is still what makes the file durable.
    """

    def __init__(self, raw):
        self.raw = raw
        self.size = 0
        self._sha256 = hashlib.sha256()
        self._queue: queue.Queue = queue.Queue(HASH_QUEUE_DEPTH)
        self._error: BaseException | None = None
        self._started_writeback = 0
        self._hasher = threading.Thread(target=self._hash, name="sha256", daemon=True)
        self._hasher.start()

    def _hash(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._sha256.update(chunk)
                except BaseException as exc:  # reported by hexdigest(); keep draining so writers never block
                    self._error = exc

    def write(self, data) -> int:
        if not isinstance(data, bytes):
            data = bytes(data)  # a bytearray or memoryview could change before it is hashed
        written = self.raw.write(data)
        self._queue.put(data)
        self.size += len(data)
        if self.size - self._started_writeback >= WRITEBACK_AFTER:
            self.raw.flush()
            start_writeback(self.raw.fileno(), self._started_writeback, self.size - self._started_writeback)
            self._started_writeback = self.size
        return written

    def flush(self):
        self.raw.flush()

    def tell(self) -> int:
        return self.size

    def close(self) -> None:
        """Stop the hasher once it has hashed everything written; idempotent."""
        if self._hasher.is_alive():
            self._queue.put(None)
            self._hasher.join()

    def hexdigest(self) -> str:
        self.close()
        if self._error is not None:
            raise self._error
        return self._sha256.hexdigest()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


_sync_file_range = None


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask Linux to start writing a range of a file to disk, without waiting (a no-op elsewhere)."""
    global _sync_file_range
    if _sync_file_range is None:
        try:
            function = ctypes.CDLL(None, use_errno=True).sync_file_range
            function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
            _sync_file_range = function
        except (AttributeError, OSError):
            _sync_file_range = False
    if _sync_file_range:
        _sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)  # a hint: its errors do not matter


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
    with create_private_file(temporary, "w") as out:
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

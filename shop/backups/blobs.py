"""The blob store: each upload file kept once, under its SHA-256, for every set that has it.

Layout (s3media and other tools build on it; keep it stable):

    BACKUP_PATH/blobs/<sha256[:2]>/<sha256>          the file's bytes, nothing else (mode 0640)
    s3://BACKUP_S3_BUCKET/BACKUP_S3_PREFIX/blobs/<sha256[:2]>/<sha256>   the same bytes offsite

A set's manifest (shop/backups/manifest.py) lists every upload file with its path, sha256,
size, mode and mtime_ns, and `stored: "blob"` for the files kept here. A blob is immutable:
it is written once (a hidden temporary file in BACKUP_PATH/blobs, hashed while it is copied,
made durable by syncfs, then renamed into place, then syncfs again so the rename survives a
crash) before the manifest that names it is published. Blobs are only ever removed by the
retention sweep (mark and sweep: every blob no kept set references), under the backup lock,
so a sweep never runs alongside a backup that is writing blobs its manifest will name.
"""

import errno
import hashlib
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shop.backups import durable, local
from shop.backups.errors import CorruptSet
from shop.backups.files import PRIVATE_DIR_MODE, create_private_file
from shop.backups.manifest import CHUNK_SIZE, STORED_IN_BLOB, STORED_IN_BUCKET, UploadFile

logger = logging.getLogger("shop.backups")

BLOBS_DIR = "blobs"
TEMP_PREFIX = ".incoming-"
CHECK_THREADS = 2  # hashlib releases the GIL: two blobs are hashed at a time


def store_root() -> Path:
    return local.backup_root() / BLOBS_DIR


def blob_key(sha256: str) -> str:
    """The blob's path relative to the store's parent: its key below BACKUP_S3_PREFIX too."""
    return f"{BLOBS_DIR}/{sha256[:2]}/{sha256}"


def blob_path(sha256: str) -> Path:
    return local.backup_root() / blob_key(sha256)


def sha256_from_key(key: str) -> str | None:
    """The SHA-256 a blob key ends with ("<prefix>/blobs/ab/ab12...") or None if it is not one."""
    parts = key.rsplit("/", 3)
    if len(parts) >= 3 and parts[-3] == BLOBS_DIR and len(parts[-1]) == 64 and parts[-1][:2] == parts[-2]:
        return parts[-1]
    return None


def copy_hashing(source, out, advance=None) -> tuple[str, int]:
    """Copy one open file into another in chunks; (SHA-256 hex, size) of the bytes copied."""
    digest, size = hashlib.sha256(), 0
    while chunk := source.read(CHUNK_SIZE):
        out.write(chunk)
        digest.update(chunk)
        size += len(chunk)
        if advance:
            advance(len(chunk))
    return digest.hexdigest(), size


def _private_shard(sha256: str) -> Path:
    shard = blob_path(sha256).parent
    if not shard.is_dir():
        shard.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
        os.chmod(shard, PRIVATE_DIR_MODE)
    return shard


class BlobWriter:
    """Adds files to the local store during one backup. New blobs stay hidden temporary files
    until `commit()` makes them durable and renames them into place; `discard()` removes them."""

    def __init__(self):
        self.root = store_root()
        self._root = str(self.root)
        self.root.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
        os.chmod(self.root, PRIVATE_DIR_MODE)
        self.pending: dict[str, Path] = {}  # sha256 -> temporary file
        self.new_bytes = 0
        self._counter = 0
        self._lock = threading.Lock()  # add() runs in several threads at once

    def has(self, sha256: str) -> bool:
        return sha256 in self.pending or blob_path(sha256).is_file()

    def size_of(self, sha256: str) -> int | None:
        """The size of the blob `sha256` (stored, or written by this backup), None if there is none."""
        # One stat per upload file and backup: a plain string path, not pathlib (several times dearer).
        pending = self.pending.get(sha256)
        try:
            return os.stat(pending or f"{self._root}/{sha256[:2]}/{sha256}").st_size
        except FileNotFoundError:
            return None

    def temporary_path(self) -> Path:
        """A new hidden file name in the store, for bytes whose hash is not known yet."""
        with self._lock:
            self._counter += 1
            return self.root / f"{TEMP_PREFIX}{os.getpid()}-{self._counter}"

    def adopt(self, temporary: Path, sha256: str) -> None:
        """Take a fully written temporary file as the blob `sha256` (hashed while it was
        written), or drop it when that blob is stored already."""
        with self._lock:
            if self.has(sha256):
                temporary.unlink()
            else:
                self.pending[sha256] = temporary
                self.new_bytes += temporary.stat().st_size

    def add(self, path: Path, advance=None) -> tuple[str, int]:
        """Store the file at `path` unless its content is stored already; (sha256, size)."""
        temporary = self.temporary_path()
        try:
            with open(path, "rb") as source, create_private_file(temporary) as out:
                sha256, size = copy_hashing(source, out, advance)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        self.adopt(temporary, sha256)
        return sha256, size

    def commit(self) -> list[str]:
        """Data to disk, then the renames, then those to disk too; the SHA-256s of the new blobs."""
        if not self.pending:
            return []
        durable.flush_to_disk(self.root)
        for sha256, temporary in self.pending.items():
            _private_shard(sha256)
            os.rename(temporary, blob_path(sha256))
        durable.flush_to_disk(self.root)
        added, self.pending = list(self.pending), {}
        return added

    def discard(self) -> None:
        for temporary in self.pending.values():
            temporary.unlink(missing_ok=True)
        self.pending = {}


def blob_problem(sha256: str, size: int, advance=None) -> str | None:
    """What is wrong with a local blob (missing, wrong size, wrong hash), or None."""
    path = blob_path(sha256)
    try:
        actual_size = path.stat().st_size
    except FileNotFoundError:
        return f"blob {blob_key(sha256)} is missing"
    if actual_size != size:
        return f"blob {blob_key(sha256)} has {actual_size} bytes, the manifest says {size}"
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK_SIZE):
            digest.update(chunk)
            if advance:
                advance(len(chunk))
    if digest.hexdigest() != sha256:
        return f"blob {blob_key(sha256)} has SHA-256 {digest.hexdigest()}: its content changed"
    return None


def blob_problems(blobs: dict[str, int], report) -> list[str]:
    """Re-read every blob of a set (two at a time) and compare size and SHA-256 with its name."""
    if not blobs:
        return []
    with (
        report.track("checking blobs", sum(blobs.values())) as advance,
        ThreadPoolExecutor(CHECK_THREADS, thread_name_prefix="check-blob") as pool,
    ):
        found = pool.map(lambda item: blob_problem(*item, advance), sorted(blobs.items()))
        return [problem for problem in found if problem]


def summary_blobs(summary: dict) -> dict[str, int]:
    """{sha256: size} of the blobs a set names, from its manifest as JSON or from the plaintext
    index of an encrypted set (which lists them, so retention needs no identity)."""
    if "blobs" in summary:
        return summary["blobs"]
    files = (summary.get("uploads") or {}).get("files") or []
    return {entry["sha256"]: entry["size"] for entry in files if entry.get("stored") == STORED_IN_BLOB}


def summary_bucket_blobs(summary: dict) -> dict[str, int]:
    """{sha256: size} of the blobs a set keeps in the backup bucket only (`stored: "bucket"`, a
    media bucket's objects: shop/backups/media_bucket.py), from its manifest or its index."""
    if "bucket_blobs" in summary:
        return summary["bucket_blobs"]
    files = (summary.get("uploads") or {}).get("files") or []
    return {entry["sha256"]: entry["size"] for entry in files if entry.get("stored") == STORED_IN_BUCKET}


def same_filesystem(a: Path, b: Path) -> bool:
    return a.stat().st_dev == b.stat().st_dev


def place(entry: UploadFile, target: Path, link: bool) -> None:
    """Put a checked blob at `target`: a hard link (no copy) when `link`, else a copy whose
    hash is checked again as it is written. Mode and mtime are those of the manifest."""
    source = blob_path(entry.sha256)
    linked = False
    if link:
        try:
            os.link(source, target)
            linked = True
        except OSError as exc:  # EXDEV, or EPERM (protected_hardlinks): copy instead
            if exc.errno == errno.EEXIST:
                raise
    if not linked:
        with open(source, "rb") as blob, open(target, "xb") as out:
            sha256, _ = copy_hashing(blob, out)
        if sha256 != entry.sha256:
            raise CorruptSet(f"blob {blob_key(entry.sha256)} changed while {entry.path} was copied from it")
    os.chmod(target, entry.mode & 0o777)
    os.utime(target, ns=(entry.mtime_ns, entry.mtime_ns))


def stored_names() -> set[str]:
    """The SHA-256 of every blob in the local store (empty when the store is not there)."""
    root = store_root()
    if not root.is_dir():
        return set()
    return {blob.name for shard in root.iterdir() if shard.is_dir() for blob in shard.iterdir()}


def sweep(keep: set[str]) -> tuple[int, int]:
    """Delete every local blob not in `keep`, and temporary files of killed backups; (count, bytes).
    Call only while holding the backup lock: a running backup's new blobs are referenced by
    no manifest until its set is published."""
    root = store_root()
    if not root.is_dir():
        return 0, 0
    remove_leftovers()
    count = size = 0
    # os.scandir, not Path.iterdir: a Path per blob was most of the sweep's time (~15 -> ~3 ms
    # for 1,900 blobs), and the sweep runs after every backup.
    for shard in os.scandir(root):
        if not shard.is_dir():
            continue
        for blob in os.scandir(shard.path):
            if blob.name not in keep:
                size += blob.stat().st_size
                os.unlink(blob.path)
                count += 1
    return count, size


def remove_leftovers() -> list[str]:
    """Delete the temporary files of killed backups and fetches; only while holding the lock."""
    root = store_root()
    leftovers = list(root.glob(f"{TEMP_PREFIX}*")) if root.is_dir() else []
    for path in leftovers:
        path.unlink(missing_ok=True)
    return [path.name for path in leftovers]

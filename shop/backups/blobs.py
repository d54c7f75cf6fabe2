"""The blob store: each upload file kept once, under its SHA-256, for every set that has it.

Layout (s3media and other tools build on it; keep it stable):

    BACKUP_PATH/blobs/<sha256[:2]>/<sha256>          the file's bytes, or their age ciphertext (0640)
    s3://BACKUP_S3_BUCKET/BACKUP_S3_PREFIX/blobs/<sha256[:2]>/<sha256>   the same offsite (encrypted
                                                      to BACKUP_AGE_RECIPIENTS when those are set)

A set's manifest (shop/backups/manifest.py) lists every upload file with its path, sha256,
size, mode and mtime_ns, and `stored: "blob"` for the files kept here. A blob is immutable:
it is written once (a hidden temporary file in BACKUP_PATH/blobs, hashed while it is copied,
made durable by syncfs, then renamed into place, then syncfs again so the rename survives a
crash) before the manifest that names it is published. Blobs are only ever removed by the
retention sweep (mark and sweep: every blob no kept set references), under the backup lock,
so a sweep never runs alongside a backup that is writing blobs its manifest will name.

With BACKUP_ENCRYPT_LOCAL on, every blob written from then on (by a backup, the upload-time
archive, a media bucket's download, a fetch from S3) is the age object that goes to S3, encrypted
to BACKUP_AGE_RECIPIENTS while it streams in, and still named by the SHA-256 of its plaintext: the
name, the S3 key and retention do not change. A store may hold both kinds: blobs written before
encryption was turned on stay plaintext and valid (an age file starts with `age-encryption.org/v1`,
which no image does). Every read goes through `copy_out` (decrypting with the identity when the
blob is encrypted, the plaintext's SHA-256 checked); an encrypted blob is never hard-linked into a
restore. Without the identity an encrypted blob is checked against the size and SHA-256 of its
ciphertext that the set's plaintext index records ("stored_blobs", shop/backups/crypto.py).
"""

import errno
import hashlib
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shop.backups import crypto, durable, local
from shop.backups.errors import CorruptSet
from shop.backups.files import PRIVATE_DIR_MODE, create_private_file
from shop.backups.manifest import CHUNK_SIZE, STORED_IN_BLOB, STORED_IN_BUCKET, UploadFile

logger = logging.getLogger("shop.backups")

BLOBS_DIR = "blobs"
TEMP_PREFIX = ".incoming-"
CHECK_THREADS = 2  # hashlib releases the GIL: two blobs are hashed at a time
# age's payload (age-encryption.org/v1): a 16-byte nonce, then 64 KiB chunks with a 16-byte tag each.
AGE_NONCE, AGE_CHUNK, AGE_TAG = 16, 64 * 1024, 16
AGE_HEADER_MAX = 64 * 1024  # a header names every recipient: a few hundred bytes each


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


def write_blob(source, out, recipients, advance=None) -> tuple[str, int, dict | None]:
    """Copy one open file into a blob file: as it is, or encrypted to `recipients` if any;
    (SHA-256, size) of the plaintext read and, when encrypted, the ciphertext's size and SHA-256."""
    if not recipients:
        return (*copy_hashing(source, out, advance), None)
    reader, writer = crypto.HashingReader(source, advance), crypto.HashingWriter(out)
    crypto.encrypt_stream(reader, writer, recipients)
    return reader.sha256.hexdigest(), reader.size, writer.stored()


def is_encrypted(path: Path | str) -> bool:
    """Whether the blob file at `path` is age ciphertext (FileNotFoundError if there is none)."""
    return inspect(path)[0]


def plaintext_size(path: Path | str) -> int | None:
    """The size of the content of the blob file at `path`: see `inspect`."""
    return inspect(path)[1]


def inspect(path: Path | str) -> tuple[bool, int | None]:
    """(encrypted, content size) of the blob file at `path`: its own size, or for an age file the
    plaintext's, from its header and length (None if the header is not valid); FileNotFoundError."""
    with open(path, "rb") as blob:
        head = blob.read(len(crypto.AGE_HEADER))
        size = os.fstat(blob.fileno()).st_size
        if not crypto.is_encrypted(head):
            return False, size
        while (mac_line := head.find(b"\n--- ")) < 0 or head.find(b"\n", mac_line + 1) < 0:
            more = blob.read(1024)
            if not more or len(head) > AGE_HEADER_MAX:
                return True, None
            head += more
    payload = size - (head.find(b"\n", mac_line + 1) + 1) - AGE_NONCE
    if payload < AGE_TAG:
        return True, None
    chunks = max(1, -(-payload // (AGE_CHUNK + AGE_TAG)))
    return True, payload - chunks * AGE_TAG


def _private_shard(sha256: str) -> Path:
    shard = blob_path(sha256).parent
    if not shard.is_dir():
        shard.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
        os.chmod(shard, PRIVATE_DIR_MODE)
    return shard


class BlobWriter:
    """Adds files to the local store during one backup. New blobs stay hidden temporary files
    until `commit()` makes them durable and renames them into place; `discard()` removes them.
    With BACKUP_ENCRYPT_LOCAL they are encrypted as they are written (`recipients`), and
    `stored` records the size and SHA-256 of each ciphertext written."""

    def __init__(self):
        self.root = store_root()
        self._root = str(self.root)
        self.root.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
        os.chmod(self.root, PRIVATE_DIR_MODE)
        self.pending: dict[str, Path] = {}  # sha256 -> temporary file
        self.recipients = crypto.local_recipients()
        self.stored: dict[str, dict] = {}  # sha256 -> {"stored_size", "stored_sha256"} of its ciphertext
        self.new_bytes = 0
        self._counter = 0
        self._lock = threading.Lock()  # add() runs in several threads at once

    def has(self, sha256: str) -> bool:
        return sha256 in self.pending or blob_path(sha256).is_file()

    def size_of(self, sha256: str) -> int | None:
        """The size of the content of the blob `sha256` (stored, or written by this backup; its
        plaintext's if it is encrypted), None if there is none."""
        # Once per upload file and backup: a plain string path, not pathlib (several times dearer).
        pending = self.pending.get(sha256)
        try:
            return plaintext_size(pending or f"{self._root}/{sha256[:2]}/{sha256}")
        except FileNotFoundError:
            return None

    def temporary_path(self) -> Path:
        """A new hidden file name in the store, for bytes whose hash is not known yet."""
        with self._lock:
            self._counter += 1
            return self.root / f"{TEMP_PREFIX}{os.getpid()}-{self._counter}"

    def adopt(self, temporary: Path, sha256: str, stored: dict | None = None) -> None:
        """Take a fully written temporary file as the blob `sha256` (hashed while it was
        written; `stored`: its ciphertext's size and SHA-256 if it is encrypted), or drop it
        when that blob is stored already."""
        with self._lock:
            if self.has(sha256):
                temporary.unlink()
            else:
                self.pending[sha256] = temporary
                self.new_bytes += temporary.stat().st_size
                if stored:
                    self.stored[sha256] = stored

    def add(self, path: Path, advance=None) -> tuple[str, int]:
        """Store the file at `path` unless its content is stored already; (sha256, size)."""
        temporary = self.temporary_path()
        try:
            with open(path, "rb") as source, create_private_file(temporary) as out:
                sha256, size, stored = write_blob(source, out, self.recipients, advance)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        self.adopt(temporary, sha256, stored)
        return sha256, size

    def stored_records(self, names) -> dict[str, dict]:
        """{sha256: {"stored_size", "stored_sha256"}} of the encrypted blobs among `names`, for a
        set's plaintext index: as written now, else as a local set's index recorded it, else
        (a blob the upload-time archive or a fetch wrote) hashed now, once: later sets carry it."""
        known = recorded_ciphertexts()
        records = {}
        for sha256 in sorted(names):
            path = self.pending.get(sha256) or blob_path(sha256)
            if sha256 in self.stored:
                records[sha256] = self.stored[sha256]
            elif is_encrypted(path):
                records[sha256] = known.get(sha256) or _ciphertext_record(path)
        return records

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


def recorded_ciphertexts() -> dict[str, dict]:
    """The ciphertext records ("stored_blobs") of the local sets' plaintext indexes."""
    records = {}
    for set_id in local.local_set_ids():
        try:
            index = crypto.read_index(local.set_dir(set_id))
        except CorruptSet:
            continue
        records.update((index or {}).get("stored_blobs") or {})
    return records


def _ciphertext_record(path: Path, advance=None) -> dict:
    """The size and SHA-256 of a blob file as it is stored (of an encrypted one's ciphertext)."""
    with open(path, "rb") as blob:
        out = crypto.HashingWriter(None)
        copy_hashing(blob, out, advance)
    return out.stored()


def copy_out(sha256: str, out, keys=None, advance=None) -> int:
    """Copy the content of the blob `sha256` into `out`: decrypted with `keys` (identities, or an
    identity file: crypto.identities_to_read) if it is encrypted; its size. Every reader of the
    store goes through here. CorruptSet if the content does not have the SHA-256 it is named by
    (or its ciphertext does not authenticate), IdentityRefused, FileNotFoundError if missing."""
    what = f"blob {blob_key(sha256)}"
    with open(blob_path(sha256), "rb") as blob:
        encrypted = crypto.is_encrypted(blob.read(len(crypto.AGE_HEADER)))
        blob.seek(0)
        if encrypted:
            identities = crypto.identities_to_read(keys, what)
            target = crypto.HashingWriter(out)
            crypto.decrypt_stream(crypto.HashingReader(blob, advance), target, identities, what)
            digest, size = target.sha256.hexdigest(), target.size
        else:
            digest, size = copy_hashing(blob, out, advance)
    if digest != sha256:
        raise CorruptSet(f"{what} has SHA-256 {digest}: its content changed")
    return size


def keys_for(names, keys):
    """The identities to read these blobs with: `keys` loaded if any of them is encrypted (else
    None), so that a missing or wrong identity file is refused before anything is changed."""
    if isinstance(keys, list):
        return keys
    for sha256 in sorted(names):
        try:
            if is_encrypted(blob_path(sha256)):
                return crypto.identities_to_read(keys, f"blob {blob_key(sha256)}")
        except FileNotFoundError:
            continue  # reported as missing by the check
    return None


def blob_problem(sha256: str, size: int, advance=None, keys=None, stored: dict | None = None) -> str | None:
    """What is wrong with a local blob (missing, wrong size, wrong hash), or None. An encrypted
    blob is decrypted when `keys` are identities, else compared with `stored` (its ciphertext's
    size and SHA-256, as an index records them), or with none, only its size is checked."""
    path = blob_path(sha256)
    try:
        encrypted, actual_size = inspect(path)
    except FileNotFoundError:
        return f"blob {blob_key(sha256)} is missing"
    if actual_size != size:
        return f"blob {blob_key(sha256)} has {actual_size} bytes, the manifest says {size}"
    if encrypted and not isinstance(keys, list):
        return _ciphertext_problem(path, sha256, stored, advance)
    try:
        with open(os.devnull, "wb") as sink:
            copy_out(sha256, sink, keys, advance)
    except CorruptSet as exc:
        return str(exc)
    return None


def _ciphertext_problem(path: Path, sha256: str, stored: dict | None, advance) -> str | None:
    if stored is None:
        return None
    found = _ciphertext_record(path, advance)
    if found != stored:
        return (
            f"blob {blob_key(sha256)} (encrypted) has {found['stored_size']} bytes and SHA-256 "
            f"{found['stored_sha256']}, the index says {stored['stored_size']} and "
            f"{stored['stored_sha256']}: its content changed"
        )
    return None


def blob_problems(blobs: dict[str, int], report, keys=None, stored: dict | None = None) -> list[str]:
    """Re-read every blob of a set (two at a time) and compare size and SHA-256 with its name
    (decrypting encrypted ones with `keys`; without, comparing them with `stored`: see blob_problem)."""
    if not blobs:
        return []
    stored = stored or {}
    with (
        report.track("checking blobs", sum(blobs.values())) as advance,
        ThreadPoolExecutor(CHECK_THREADS, thread_name_prefix="check-blob") as pool,
    ):

        def check(item):
            return blob_problem(*item, advance, keys, stored.get(item[0]))

        return [problem for problem in pool.map(check, sorted(blobs.items())) if problem]


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


def place(entry: UploadFile, target: Path, link: bool, keys=None) -> None:
    """Put a checked blob at `target`: a hard link (no copy) when `link` and the blob is not
    encrypted, else a copy (decrypted with `keys`) whose hash is checked again as it is written.
    Mode and mtime are those of the manifest."""
    source = blob_path(entry.sha256)
    linked = False
    if link and not is_encrypted(source):
        try:
            os.link(source, target)
            linked = True
        except OSError as exc:  # EXDEV, or EPERM (protected_hardlinks): copy instead
            if exc.errno == errno.EEXIST:
                raise
    if not linked:
        with open(target, "xb") as out:
            try:
                copy_out(entry.sha256, out, keys)
            except CorruptSet as exc:
                raise CorruptSet(f"{exc} while {entry.path} was copied from it") from None
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

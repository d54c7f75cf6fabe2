"""Backup sets on S3: streamed multipart upload with SHA-256 checksums checked by S3.

Each part is sent with its SHA-256, which S3 checks on receipt; after completing the
upload we compare the object's composite checksum (the SHA-256 of the part digests) with
the one we computed, and the full-file SHA-256 with the manifest. Only then is the set
offsite. The manifest is uploaded last, so a set without one on S3 is incomplete.

With BACKUP_AGE_RECIPIENTS set, every file leaves the machine encrypted (shop/backups/crypto.py):
it is encrypted on the fly into the parts as they are sent (memory stays one part), the
manifest too, and a plaintext index (crypto.INDEX_NAME) records what listing and retention
need without the identity, including each stored object's size and S3 checksum. The
SHA-256 read from the local file is still compared with the manifest (the plaintext's).

Blobs (shop/backups/blobs.py) live under `<prefix>/blobs/<sha256[:2]>/<sha256>`, beside the
sets' `<prefix>/<set id>/<file>`, keyed by the SHA-256 of their plaintext: a set uploads only the
blobs one listing of `<prefix>/blobs/` does not show (encrypted like the rest when recipients are
set, marked by their metadata; a blob the local store holds encrypted, BACKUP_ENCRYPT_LOCAL, is
sent as it is stored, never encrypted twice), before its manifest, so a set whose manifest is on
S3 has all its blobs there too. The index of an encrypted set lists its blobs, for retention's
sweep. A blob fetched back into a store that encrypts keeps (or gets) its age ciphertext.
"""

import base64
import contextlib
import hashlib
import json
import math
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)
from django.conf import settings

from shop.backups import blobs, crypto
from shop.backups.errors import BackupError, CorruptSet, OffsiteError
from shop.backups.files import create_private_file
from shop.backups.manifest import CHUNK_SIZE, MANIFEST_NAME, is_set_id

MIN_PART_SIZE = 8 * 1024 * 1024  # held in memory while it is sent; botocore makes a few copies
MAX_PARTS = 10_000
# Any error from botocore (connection refused, timeouts, HTTP errors) makes the copy not offsite.
TRANSPORT_ERRORS = (BotoCoreError, ClientError, OSError)


def configured() -> bool:
    return bool(settings.BACKUP_S3_BUCKET)


def client(own_session: bool = False):
    if not configured():
        raise BackupError("S3 is not configured: set BACKUP_S3_BUCKET (and the endpoint and credentials).")
    # Imported here, not at the top: boto3 takes about 0.1 s to import, and every manage.py
    # command imports this module (through the admin) whether it talks to S3 or not.
    import boto3
    from botocore.config import Config

    # own_session: botocore's loaded models belong to that session and go with the client (the
    # default session keeps them for the process, so later clients are cheaper to make).
    maker = boto3.session.Session() if own_session else boto3
    return maker.client(
        "s3",
        endpoint_url=settings.BACKUP_S3_ENDPOINT_URL,
        region_name=settings.BACKUP_S3_REGION,
        aws_access_key_id=settings.BACKUP_S3_ACCESS_KEY_ID,
        aws_secret_access_key=settings.BACKUP_S3_SECRET_ACCESS_KEY,
        config=Config(
            connect_timeout=10,
            read_timeout=120,
            retries={"max_attempts": 3, "mode": "standard"},
            # We send our own SHA-256 per part; no extra CRC32 alongside it.
            request_checksum_calculation="when_required",
        ),
    )


def explain(exc: Exception) -> str:
    """botocore's error in words an admin can act on."""
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return (
            f"no S3 credentials for {describe_target()}: set BACKUP_S3_ACCESS_KEY_ID and "
            "BACKUP_S3_SECRET_ACCESS_KEY, or leave BACKUP_S3_BUCKET empty for local-only backups"
        )
    if isinstance(exc, EndpointConnectionError):
        where = settings.BACKUP_S3_ENDPOINT_URL or "AWS S3"
        return f"S3 could not be reached at {where} ({exc}); check BACKUP_S3_ENDPOINT_URL and the network"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"S3 refused the request: {error.get('Code', '?')}: {error.get('Message', exc)}"
    return str(exc)


def describe_target() -> str:
    return f"s3://{settings.BACKUP_S3_BUCKET}/{_prefix()}"


def _prefix() -> str:
    return settings.BACKUP_S3_PREFIX.strip("/")


def object_key(set_id: str, name: str) -> str:
    return f"{_prefix()}/{set_id}/{name}" if _prefix() else f"{set_id}/{name}"


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def part_size_for(size: int) -> int:
    return max(MIN_PART_SIZE, math.ceil(size / MAX_PARTS))


def max_stored_size(size: int, encrypted: bool) -> int:
    """An upper bound of the object's size: age adds 16 bytes per 64 KiB and a short header."""
    return size + size // 4096 + 64 * 1024 if encrypted else size


class PartSender:
    """A write-only stream that sends what is written to it as the parts of a multipart upload,
    each with its SHA-256 for S3 to check. A part is sent (and hashed) in a thread of its own
    while the next one is read or encrypted: at most two parts are held in memory."""

    def __init__(self, s3, key: str, upload_id: str, part_size: int):
        self.s3, self.key, self.upload_id, self.part_size = s3, key, upload_id, part_size
        self.buffer = bytearray()
        self.parts: list[dict] = []
        self.part_digests: list[bytes] = []
        self.whole = hashlib.sha256()
        self.size = 0
        self.count = 0  # parts handed to the sender thread
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3-part")
        self._pending: Future | None = None

    def write(self, data) -> int:
        if not self.buffer and len(data) == self.part_size:  # a whole part read at once: no copy
            self._send(bytes(data))
            return len(data)
        self.buffer += data
        while len(self.buffer) >= self.part_size:
            self._send(bytes(self.buffer[: self.part_size]))
            del self.buffer[: self.part_size]
        return len(data)

    def flush(self) -> None:
        pass

    def finish(self) -> None:
        """Send what is left (at least one part, also for an empty file) and wait for the last part."""
        if self.buffer or not self.count:
            self._send(bytes(self.buffer))
            self.buffer.clear()
        self._collect()

    def close(self) -> None:
        """Wait for the part in flight, if any (its error is the caller's to raise, not ours)."""
        self._pool.shutdown(wait=True)

    def _send(self, data: bytes) -> None:
        self._collect()  # the part before: its error stops the upload here
        self.count += 1
        self._pending = self._pool.submit(self._upload_part, self.count, data)

    def _collect(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.parts.append(pending.result())

    def _upload_part(self, number: int, data: bytes) -> dict:
        digest = hashlib.sha256(data).digest()
        self.whole.update(data)  # in order: one sender thread, one part at a time
        self.part_digests.append(digest)
        self.size += len(data)
        response = self.s3.upload_part(
            Bucket=settings.BACKUP_S3_BUCKET,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=data,
            ChecksumSHA256=_b64(digest),
        )
        return {"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": _b64(digest)}

    def stored(self) -> dict:
        """What S3 holds: size, SHA-256 and S3's composite checksum (of the part digests)."""
        composite = _b64(hashlib.sha256(b"".join(self.part_digests)).digest())
        return {"stored_size": self.size, "stored_sha256": self.whole.hexdigest(), "s3_checksum": composite}


def blob_object_key(sha256: str) -> str:
    """A blob's key: the local store's layout (shop/backups/blobs.py) below the prefix."""
    return f"{_prefix()}/{blobs.blob_key(sha256)}" if _prefix() else blobs.blob_key(sha256)


class _WithinProgress:
    """A reporter for one of many small files: its bytes count towards one outer progress."""

    def __init__(self, advance):
        self.advance = advance

    @contextlib.contextmanager
    def track(self, label: str, total: int | None):
        yield self.advance


def upload_file(
    s3,
    path: Path,
    set_id: str,
    expected_sha256: str | None,
    report,
    recipients=None,
    key: str | None = None,
    sealed: bool = False,
) -> dict:
    """Upload a file to `key` (by default the set's own key for it), encrypted to `recipients` on
    the way if given, or marked encrypted as it is if `sealed` (age ciphertext already); check
    that what was read has `expected_sha256` (unless None) and that S3 holds what was sent;
    returns PartSender.stored()."""
    bucket, key = settings.BACKUP_S3_BUCKET, key or object_key(set_id, path.name)
    size = path.stat().st_size
    # An encrypted object's SHA-256 is known only once it is sent: the index records it.
    metadata = {"encrypted": crypto.SCHEME} if recipients or sealed else {"sha256": expected_sha256}
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256", Metadata=metadata)
    sender = PartSender(s3, key, upload["UploadId"], part_size_for(max_stored_size(size, bool(recipients))))
    try:
        with open(path, "rb") as raw, report.track(f"uploading {path.name}", size) as advance:
            source = crypto.HashingReader(raw, advance)
            if recipients:
                crypto.encrypt_stream(source, sender, recipients)
            else:
                while data := source.read(sender.part_size):
                    sender.write(data)
            sender.finish()
        if expected_sha256 is not None and source.sha256.hexdigest() != expected_sha256:
            raise CorruptSet(f"{path} no longer matches its manifest checksum; not uploading it.")
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": sender.parts}
        )
    except BaseException:
        sender.close()  # no part may be in flight when the upload is aborted
        _abort_quietly(s3, bucket, key, upload["UploadId"])
        raise
    finally:
        sender.close()
    stored = sender.stored()
    _check_uploaded(s3, key, stored["stored_size"], metadata, stored["s3_checksum"])
    return stored


def put_small_file(s3, set_id: str, name: str, data: bytes) -> None:
    """A small file (a manifest, an index) in one request, checked like the others."""
    key, digest = object_key(set_id, name), hashlib.sha256(data).digest()
    metadata = {"sha256": digest.hex()}
    s3.put_object(
        Bucket=settings.BACKUP_S3_BUCKET,
        Key=key,
        Body=data,
        ChecksumAlgorithm="SHA256",
        ChecksumSHA256=_b64(digest),
        Metadata=metadata,
    )
    _check_uploaded(s3, key, len(data), metadata, _b64(digest))


def _abort_quietly(s3, bucket, key, upload_id) -> None:
    # If even the abort fails, the original error matters more; S3 can expire abandoned uploads.
    with contextlib.suppress(*TRANSPORT_ERRORS):
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def _check_uploaded(s3, key: str, size: int, metadata: dict, composite: str) -> None:
    head = s3.head_object(Bucket=settings.BACKUP_S3_BUCKET, Key=key, ChecksumMode="ENABLED")
    # S3 writes the composite checksum as '<base64>-<number of parts>'.
    stored = (head.get("ChecksumSHA256") or "").split("-")[0]
    problems = []
    if head["ContentLength"] != size:
        problems.append(f"{head['ContentLength']} bytes instead of {size}")
    if any(head.get("Metadata", {}).get(name) != value for name, value in metadata.items()):
        problems.append("its metadata is wrong")
    if stored != composite:
        problems.append(f"S3's checksum {stored or 'is missing'} instead of {composite}")
    if problems:
        where = f"s3://{settings.BACKUP_S3_BUCKET}/{key}"
        raise OffsiteError(f"{where} did not arrive intact: " + ", ".join(problems))


def upload_set(set_dir: Path, summary: dict, report) -> None:
    """Copy a local set to S3 and verify it: the set's files, the blobs S3 lacks, the manifest
    last; OffsiteError if S3 fails in any way. `summary` is the manifest, or the index of a set
    encrypted on disk (whose files are sent as they are)."""
    set_id = summary["id"]
    try:
        s3 = client()
        sealed = crypto.is_index(summary)  # encrypted on disk: sent as it is stored
        recipients = [] if sealed else crypto.configured_recipients()
        stored = {}
        for name, entry in sorted(summary["files"].items()):
            expected = entry["stored_sha256"] if sealed else entry["sha256"]
            stored[name] = upload_file(s3, set_dir / name, set_id, expected, report, recipients)
        # Plaintext blobs are encrypted here; those encrypted in the local store are sent as they are.
        upload_missing_blobs(s3, summary, report, recipients or crypto.configured_recipients())
        manifest_bytes = (set_dir / MANIFEST_NAME).read_bytes()
        index = None
        if sealed:
            index = {
                **summary,
                "files": {name: {**entry, **stored[name]} for name, entry in summary["files"].items()},
            }
        elif recipients:
            index = crypto.make_index(summary, stored, crypto.public_keys(recipients))
            manifest_bytes = crypto.encrypt_bytes(manifest_bytes, recipients)
        if index is not None:
            put_small_file(s3, set_id, crypto.INDEX_NAME, _json_bytes(index))
        put_small_file(s3, set_id, MANIFEST_NAME, manifest_bytes)  # last: it marks the set complete
    except TRANSPORT_ERRORS as exc:
        raise OffsiteError(f"uploading set {set_id} to S3 failed: {explain(exc)}") from exc
    except CorruptSet:
        # Files of this set uploaded before the damaged one would stay behind, never listed.
        with contextlib.suppress(*TRANSPORT_ERRORS):
            delete_remote_set(s3, set_id)
        raise


def _json_bytes(data: dict) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def remote_set_ids(s3) -> list[str]:
    """IDs with a manifest on S3 (complete uploads), oldest first."""
    ids = set()
    paginator = s3.get_paginator("list_objects_v2")
    prefix = f"{_prefix()}/" if _prefix() else ""
    try:
        for page in paginator.paginate(Bucket=settings.BACKUP_S3_BUCKET, Prefix=prefix):
            for item in page.get("Contents", []):
                set_id, _, name = item["Key"][len(prefix) :].partition("/")
                if name == MANIFEST_NAME and is_set_id(set_id):
                    ids.add(set_id)
    except TRANSPORT_ERRORS as exc:
        raise OffsiteError(f"cannot list s3://{settings.BACKUP_S3_BUCKET}/{prefix}: {explain(exc)}") from exc
    return sorted(ids)


def _remote_small_file(s3, set_id: str, name: str) -> bytes:
    """A manifest or index exactly as uploaded; CorruptSet if it does not match its recorded SHA-256."""
    try:
        response = s3.get_object(Bucket=settings.BACKUP_S3_BUCKET, Key=object_key(set_id, name))
        data = response["Body"].read()
    except TRANSPORT_ERRORS as exc:
        raise OffsiteError(f"cannot read the {name} of set {set_id} from S3: {explain(exc)}") from exc
    if hashlib.sha256(data).hexdigest() != response.get("Metadata", {}).get("sha256"):
        raise CorruptSet(f"the {name} of set {set_id} on S3 does not match its checksum.")
    return data


def _remote_index(s3, set_id: str) -> dict:
    index = json.loads(_remote_small_file(s3, set_id, crypto.INDEX_NAME))
    if not crypto.is_index(index) or index.get("id") != set_id:
        raise CorruptSet(f"the index of the encrypted set {set_id} on S3 is not valid.")
    return index


def remote_summary(s3, set_id: str) -> dict:
    """What listing, presence checks and retention need, without any identity: the manifest of
    an unencrypted set, the plaintext index of an encrypted one."""
    data = _remote_small_file(s3, set_id, MANIFEST_NAME)
    return _remote_index(s3, set_id) if crypto.is_encrypted(data) else json.loads(data)


def remote_set_intact(s3, summary: dict, present_blobs: set[str] | None = None) -> bool:
    """Every file of the set is on S3 as it was stored: for an encrypted set the size and S3
    checksum of the stored object (from the index), else the size and SHA-256 of the manifest;
    and every blob it names is there (`present_blobs`: remote_blob_names, listed once)."""
    try:
        for name, entry in summary["files"].items():
            head = s3.head_object(
                Bucket=settings.BACKUP_S3_BUCKET, Key=object_key(summary["id"], name), ChecksumMode="ENABLED"
            )
            if not _stored_as_recorded(head, entry):
                return False
        needed = blobs.summary_blobs(summary) | blobs.summary_bucket_blobs(summary)
        if needed:
            present = remote_blob_names(s3) if present_blobs is None else present_blobs
            if not present.issuperset(needed):
                return False
    except ClientError:
        return False
    except TRANSPORT_ERRORS as exc:
        raise OffsiteError(f"cannot check set {summary['id']} on S3: {explain(exc)}") from exc
    return True


def _stored_as_recorded(head: dict, entry: dict) -> bool:
    if "stored_size" in entry:
        composite = (head.get("ChecksumSHA256") or "").split("-")[0]
        return head["ContentLength"] == entry["stored_size"] and composite == entry.get("s3_checksum")
    return head["ContentLength"] == entry["size"] and head["Metadata"].get("sha256") == entry["sha256"]


def download_set(s3, set_id: str, destination: Path, report, identity: str | None = None):
    """Stream every file of a set (manifest first) into destination, decrypting an encrypted set
    with the identity (`identity` file or BACKUP_AGE_IDENTITY_FILE): the manifest is decrypted
    first, so a missing or wrong identity stops before any data is read. Checksums are checked later.
    Returns the identities loaded (None for a set not encrypted), to read its blobs with."""
    try:
        manifest_bytes = _remote_small_file(s3, set_id, MANIFEST_NAME)
        index = identities = None
        if crypto.is_encrypted(manifest_bytes):
            index = _remote_index(s3, set_id)
            identities = crypto.identities_for(index, identity)
            manifest_bytes = crypto.decrypt_manifest(manifest_bytes, index, identities)
        with create_private_file(destination / MANIFEST_NAME) as out:
            out.write(manifest_bytes)
        manifest = json.loads(manifest_bytes)
        for name, entry in sorted(manifest["files"].items()):
            body = s3.get_object(Bucket=settings.BACKUP_S3_BUCKET, Key=object_key(set_id, name))["Body"]
            size = index["files"][name]["stored_size"] if index else entry["size"]
            with (
                create_private_file(destination / name) as out,
                report.track(f"downloading {name}", size) as advance,
            ):
                if identities:
                    what = f"{name} of set {set_id} on S3"
                    crypto.decrypt_stream(crypto.HashingReader(body, advance), out, identities, what)
                else:
                    for chunk in body.iter_chunks(CHUNK_SIZE):
                        out.write(chunk)
                        advance(len(chunk))
        fetch_missing_blobs(s3, manifest, report, identities or identity)
    except TRANSPORT_ERRORS as exc:
        raise OffsiteError(f"downloading set {set_id} from S3 failed: {explain(exc)}") from exc
    return identities


def upload_missing_blobs(s3, summary: dict, report, recipients) -> list[str]:
    """Upload the set's blobs that S3 does not hold yet (one listing, no request per present
    blob): see upload_blob; the SHA-256s uploaded."""
    needed = blobs.summary_blobs(summary)
    if not needed:
        return []
    present = remote_blob_names(s3)
    missing = sorted(sha256 for sha256 in needed if sha256 not in present)
    report.step(f"  blobs: {len(needed) - len(missing)} already offsite, {len(missing)} to upload")
    with report.track("uploading blobs", sum(needed[sha256] for sha256 in missing)) as advance:
        within = _WithinProgress(advance)
        records = summary.get("stored_blobs") or {}
        for sha256 in missing:
            upload_blob(s3, sha256, summary["id"], within, recipients, records.get(sha256))
            report.detail(f"uploaded {blob_object_key(sha256)}")
    return missing


def upload_blob(s3, sha256: str, set_id: str, report, recipients, record: dict | None = None) -> dict:
    """A local blob to S3 under its key. A plaintext one is encrypted to `recipients` if any and
    checked against its name as it is read; an encrypted one (BACKUP_ENCRYPT_LOCAL) is sent as it
    is stored, checked against its ciphertext's SHA-256 when `record` (an index's) gives it."""
    path, key = blobs.blob_path(sha256), blob_object_key(sha256)
    if blobs.is_encrypted(path):
        expected = record["stored_sha256"] if record else None
        return upload_file(s3, path, set_id, expected, report, key=key, sealed=True)
    return upload_file(s3, path, set_id, sha256, report, recipients, key=key)


def remote_blob_names(s3) -> set[str]:
    """The SHA-256 of every blob on S3 (complete uploads only: S3 lists no unfinished ones)."""
    return set(remote_blob_sizes(s3))


def remote_blob_sizes(s3) -> dict[str, int]:
    """{sha256: stored size} of every blob on S3 (an encrypted one is a little larger)."""
    prefix = blob_object_key("00")[: -len("00/00")]  # "<prefix>/blobs/"
    sizes = {}
    paginator = s3.get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=settings.BACKUP_S3_BUCKET, Prefix=prefix):
            for item in page.get("Contents", []):
                if sha256 := blobs.sha256_from_key(item["Key"]):
                    sizes[sha256] = item["Size"]
    except TRANSPORT_ERRORS as exc:
        raise OffsiteError(f"cannot list s3://{settings.BACKUP_S3_BUCKET}/{prefix}: {explain(exc)}") from exc
    return sizes


def fetch_missing_blobs(s3, manifest: dict, report, identities=None) -> int:
    """Download into the local store the set's blobs it lacks, decrypted if they were uploaded
    encrypted (`identities`, or an identity file to load them from), each checked against its
    name before it is renamed into place (a damaged one is refused: CorruptSet); the number
    fetched. Every blob the set names must be on S3 (one listing); those the store holds already
    are not downloaded again: S3 checked their SHA-256 when they were uploaded."""
    needed = blobs.summary_blobs(manifest)
    if not needed:
        return 0
    absent = sorted(needed.keys() - remote_blob_names(s3))
    if absent:
        raise CorruptSet(
            f"set {manifest['id']} on S3 lacks {len(absent)} blob(s) its manifest names "
            f"({', '.join(blobs.blob_key(sha256) for sha256 in absent[:3])}): it is incomplete. "
            "Nothing was changed. Restore another set, or from the local copy."
        )
    missing = {sha256: size for sha256, size in needed.items() if not blobs.blob_path(sha256).is_file()}
    try:
        fetch_blobs(s3, missing, report, identities)
    except CorruptSet as exc:
        raise CorruptSet(f"{exc} Restore another set, or from the local copy.") from None
    return len(missing)


def fetch_blobs(s3, sizes: dict[str, int], report, identities=None) -> None:
    """Download these blobs ({sha256: size, for the progress}) into the local store, decrypted
    if they were uploaded encrypted (`identities`, or an identity file to load them from), each
    checked against its name; all are renamed into place at the end, or none (CorruptSet for a
    damaged one, IdentityRefused for a missing or wrong identity). With BACKUP_ENCRYPT_LOCAL the
    store keeps the ciphertext of an encrypted one (decrypted on the way only to check its
    plaintext's SHA-256: the identity is needed all the same) and encrypts a plaintext one."""
    if not sizes:
        return
    writer = blobs.BlobWriter()
    try:
        with report.track(f"fetching {len(sizes)} blob(s)", sum(sizes.values())) as advance:
            for sha256 in sorted(sizes):
                identities = _fetch_blob(s3, writer, sha256, advance, identities)
        writer.commit()
    except BaseException:
        writer.discard()
        raise


def _fetch_blob(s3, writer, sha256: str, advance, identities):
    """One blob into a temporary file of the store, checked; returns the identities (loaded now
    if this is the first encrypted blob and only an identity file was given)."""
    temporary = writer.temporary_path()
    try:
        response = s3.get_object(Bucket=settings.BACKUP_S3_BUCKET, Key=blob_object_key(sha256))
        what = f"blob {blobs.blob_key(sha256)} on S3"
        with create_private_file(temporary) as raw:
            if response.get("Metadata", {}).get("encrypted"):
                identities = crypto.identities_to_read(identities, what)
                digest, stored = _receive_encrypted(
                    response["Body"], raw, identities, bool(writer.recipients), what, advance
                )
            else:
                digest, _, stored = blobs.write_blob(response["Body"], raw, writer.recipients, advance)
        if digest != sha256:
            raise CorruptSet(
                f"blob {blobs.blob_key(sha256)} on S3 has SHA-256 {digest}: it is damaged. "
                "Nothing was changed."
            )
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    writer.adopt(temporary, digest, stored)
    return identities


def _receive_encrypted(
    body, raw, identities, keep_encrypted: bool, what: str, advance
) -> tuple[str, dict | None]:
    """An encrypted blob from S3 into `raw`: decrypted, or with `keep_encrypted` (a store that
    encrypts) its ciphertext kept as it is and decrypted on the way only to hash the plaintext;
    (the plaintext's SHA-256, the ciphertext's size and SHA-256 if kept)."""
    plaintext = crypto.HashingWriter(None if keep_encrypted else raw)
    kept = crypto.HashingWriter(raw)
    if keep_encrypted:
        body = crypto.TeeReader(body, kept)
    crypto.decrypt_stream(crypto.HashingReader(body, advance), plaintext, identities, what)
    return plaintext.sha256.hexdigest(), kept.stored() if keep_encrypted else None


def delete_remote_blobs(s3, names) -> int:
    """Delete these blobs from S3, a thousand per request; the number deleted."""
    keys = [{"Key": blob_object_key(sha256)} for sha256 in sorted(names)]
    for start in range(0, len(keys), 1000):
        response = s3.delete_objects(
            Bucket=settings.BACKUP_S3_BUCKET, Delete={"Objects": keys[start : start + 1000], "Quiet": True}
        )
        if response.get("Errors"):
            error = response["Errors"][0]
            raise OffsiteError(
                f"S3 refused to delete {error.get('Key')}: {error.get('Code')}: {error.get('Message')}"
            )
    return len(keys)


def delete_remote_set(s3, set_id: str) -> None:
    prefix = object_key(set_id, "")
    # The manifest first: a half-deleted set must not look complete.
    s3.delete_object(Bucket=settings.BACKUP_S3_BUCKET, Key=object_key(set_id, MANIFEST_NAME))
    listing = s3.list_objects_v2(Bucket=settings.BACKUP_S3_BUCKET, Prefix=prefix)
    for item in listing.get("Contents", []):
        s3.delete_object(Bucket=settings.BACKUP_S3_BUCKET, Key=item["Key"])

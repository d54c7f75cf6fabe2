"""Backups of a media bucket (MEDIA_STORAGE=s3): the images are copied inside S3, not through us.

The uploads part of a set is then the list of the media bucket's objects under its prefix,
each with its path, SHA-256 and size, as for files on the uploads volume. Their bytes become
blobs of the backup bucket under the blob store's keys (`<BACKUP_S3_PREFIX>/blobs/ab/<sha256>`,
shop/backups/blobs.py), copied there server-side with CopyObject (UploadPartCopy above
MULTIPART_COPY_THRESHOLD) and only when the backup bucket lacks that blob. Such entries say
`stored: "bucket"`: the local set holds the manifest and the dump, not the images.

Where each SHA-256 comes from: a product image's name states it (the catalog names an image by
the hash of its bytes), a thumbnail's name does not (it is the image's hash and a size), so
it comes from the previous set (same path and size: names are never rewritten) or from S3's
own SHA-256 of the object. We do not take a name on trust: every copy asks S3 to compute the
SHA-256 of what it wrote (ChecksumAlgorithm=SHA256), and an object whose content is not what
its name says is kept under its real hash with a warning, as the local mode does. An object
with no known hash is copied to a temporary key first, which gives S3's hash, then to its blob.

Server-side copies need the backup bucket's credentials to read the media bucket, so they are
used when both are on the same endpoint with the same access key. Otherwise (or when the
backup bucket is not configured or cannot be reached) each object is streamed once into the
local blob store (`stored: "blob"`), from where the set's upload sends it on like any blob,
encrypted if BACKUP_AGE_RECIPIENTS is set. Server-side copies cannot be age-encrypted: product
images are public (every browser gets them), so the bucket blobs stay plaintext.
"""

import base64
import logging
import uuid
from dataclasses import dataclass

from django.conf import settings

from shop.backups import blobs, s3
from shop.backups.errors import BackupError, OffsiteError
from shop.backups.manifest import STORED_IN_BLOB, STORED_IN_BUCKET, UploadFile
from shop.catalog.media import name_sha256

logger = logging.getLogger("shop.backups")

MULTIPART_COPY_THRESHOLD = 5 * 1024**3  # CopyObject's limit; above it UploadPartCopy
COPY_PART_SIZE = 512 * 1024**2
OBJECT_MODE = 0o644  # what a restore to MEDIA_STORAGE=local gives the files


def active() -> bool:
    return settings.MEDIA_STORAGE == "s3"


@dataclass
class MediaObject:
    name: str  # below the prefix: the storage's name, as the rows hold it
    size: int
    mtime_ns: int


@dataclass
class MediaSource:
    """The media bucket as the shop's storage sees it (settings.STORAGES["default"])."""

    client: object
    bucket: str
    prefix: str
    endpoint_url: str | None
    access_key: str | None

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def objects(self) -> list[MediaObject]:
        start = f"{self.prefix}/" if self.prefix else ""
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
            for item in page.get("Contents", []):
                name = item["Key"][len(start) :]
                mtime_ns = int(item["LastModified"].timestamp() * 1_000_000_000)
                found.append(MediaObject(name, item["Size"], mtime_ns))
        return sorted(found, key=lambda found_object: found_object.name)


def media_source() -> MediaSource:
    from shop.catalog.storage import product_image_storage

    storage = product_image_storage
    return MediaSource(
        storage.connection.meta.client,
        storage.bucket_name,
        (storage.location or "").strip("/"),
        storage.endpoint_url,
        storage.access_key,
    )


def shares_backup_endpoint(source: MediaSource) -> bool:
    """Whether the backup bucket's client may copy from the media bucket server-side."""
    return (source.endpoint_url or None) == (settings.BACKUP_S3_ENDPOINT_URL or None) and (
        source.access_key or None
    ) == (settings.BACKUP_S3_ACCESS_KEY_ID or None)


def hex_of(checksum_b64: str | None) -> str | None:
    """S3's full-object SHA-256 (base64) as hex; None for none or a composite ('...-N')."""
    if not checksum_b64 or "-" in checksum_b64:
        return None
    return base64.b64decode(checksum_b64).hex()


def copy_object(
    client, source_bucket: str, source_key: str, key: str, size: int, sha256: str | None
) -> str | None:
    """Copy an object into the backup bucket at `key`, inside S3; S3's SHA-256 of the copy (hex),
    or None for a multipart copy (whose checksum is one of parts)."""
    metadata = {"sha256": sha256} if sha256 else {}
    if size > MULTIPART_COPY_THRESHOLD:
        _multipart_copy(client, source_bucket, source_key, key, size, metadata)
        return None
    result = client.copy_object(
        Bucket=settings.BACKUP_S3_BUCKET,
        Key=key,
        CopySource={"Bucket": source_bucket, "Key": source_key},
        ChecksumAlgorithm="SHA256",
        MetadataDirective="REPLACE",
        Metadata=metadata,
    )
    return hex_of(result["CopyObjectResult"].get("ChecksumSHA256"))


def _multipart_copy(client, source_bucket, source_key, key, size, metadata) -> None:
    bucket = settings.BACKUP_S3_BUCKET
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, Metadata=metadata)["UploadId"]
    try:
        parts = []
        for number, start in enumerate(range(0, size, COPY_PART_SIZE), start=1):
            end = min(start + COPY_PART_SIZE, size) - 1
            result = client.upload_part_copy(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource={"Bucket": source_bucket, "Key": source_key},
                CopySourceRange=f"bytes={start}-{end}",
            )
            parts.append({"PartNumber": number, "ETag": result["CopyPartResult"]["ETag"]})
        client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise
    stored = client.head_object(Bucket=bucket, Key=key)["ContentLength"]
    if stored != size:
        raise OffsiteError(f"s3://{bucket}/{key} has {stored} bytes after the copy, not {size}")


class BucketBlobCopier:
    """Copies media objects into the backup bucket's blobs, server-side, each only once."""

    def __init__(self, source: MediaSource, client, present: set[str]):
        self.source, self.client, self.present = source, client, present
        self.copied: list[str] = []

    def copy_in(self, name: str, size: int, sha256: str | None) -> str:
        """The blob of the object `name` in the backup bucket (copied unless there); its SHA-256."""
        if sha256 and sha256 in self.present:
            return sha256
        if sha256 and size > MULTIPART_COPY_THRESHOLD:  # no full-object checksum: the name is trusted
            copy_object(
                self.client,
                self.source.bucket,
                self.source.key(name),
                s3.blob_object_key(sha256),
                size,
                sha256,
            )
            return self._added(sha256)
        temporary = sha256 is None
        key = (
            f"{s3.blob_object_key('00')[: -len('00/00')]}{blobs.TEMP_PREFIX}{uuid.uuid4().hex}"
            if temporary
            else s3.blob_object_key(sha256)
        )
        actual = copy_object(self.client, self.source.bucket, self.source.key(name), key, size, sha256)
        if actual is None:
            raise OffsiteError(f"S3 returned no SHA-256 for the copy of {name}: cannot check it")
        if actual != sha256:
            if not temporary:
                logger.warning(
                    "%s does not hold the content its name states (SHA-256 %s): backed up as it is",
                    name,
                    actual,
                )
            if actual not in self.present:
                self._move(key, actual, size)
            self._delete(key)
        return self._added(actual)

    def _move(self, key: str, sha256: str, size: int) -> None:
        copied = copy_object(
            self.client, settings.BACKUP_S3_BUCKET, key, s3.blob_object_key(sha256), size, sha256
        )
        if copied != sha256:
            raise OffsiteError(f"the copy of {key} to its blob changed its SHA-256 ({copied}, not {sha256})")

    def _delete(self, key: str) -> None:
        self.client.delete_object(Bucket=settings.BACKUP_S3_BUCKET, Key=key)

    def _added(self, sha256: str) -> str:
        if sha256 not in self.present:
            self.present.add(sha256)
            self.copied.append(sha256)
        return sha256


def object_sha256(source: MediaSource, name: str) -> str | None:
    """The SHA-256 S3 itself keeps for an object (one with a full-object checksum), else None."""
    head = source.client.head_object(Bucket=source.bucket, Key=source.key(name), ChecksumMode="ENABLED")
    return hex_of(head.get("ChecksumSHA256"))


def server_side_copier(source: MediaSource, report) -> BucketBlobCopier | None:
    """A copier into the backup bucket, or None (with the reason logged) where the images must be
    streamed into the local blob store instead."""
    if not s3.configured():
        report.step(
            "  media bucket: no backup bucket (BACKUP_S3_BUCKET): the images go to the local blob store"
        )
        return None
    if not shares_backup_endpoint(source):
        logger.warning(
            "the media bucket and the backup bucket are on different endpoints or credentials: "
            "the images are downloaded into the local blob store and uploaded from there "
            "(no server-side copy)"
        )
        return None
    try:
        client = s3.client()
        return BucketBlobCopier(source, client, s3.remote_blob_names(client))
    except OffsiteError as exc:
        logger.warning("the backup bucket cannot be reached (%s): the images go to the local blob store", exc)
        return None


def stream_into_store(source: MediaSource, name: str, blob_writer, advance=None) -> tuple[str, int]:
    """Download one object into the local blob store (hashed as it is written, encrypted with
    BACKUP_ENCRYPT_LOCAL: shop/backups/blobs.py); (sha256, size)."""
    body = source.client.get_object(Bucket=source.bucket, Key=source.key(name))["Body"]
    temporary = blob_writer.temporary_path()
    try:
        with open(temporary, "xb") as out:
            sha256, size, stored = blobs.write_blob(body, out, blob_writer.recipients, advance)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    blob_writer.adopt(temporary, sha256, stored)
    return sha256, size


def back_up_objects(blob_writer, known: dict[str, UploadFile], report) -> list[UploadFile]:
    """Every object of the media bucket as a manifest entry, its bytes safe as a blob (in the
    backup bucket, or in the local store); BackupError if the media bucket fails."""
    source = media_source()
    report.step(f"Backing up the media bucket s3://{source.bucket}/{source.prefix} ...")
    try:
        copier = server_side_copier(source, report)
        entries = [
            _back_up_object(source, found, known.get(found.name), copier, blob_writer)
            for found in source.objects()
        ]
    except s3.TRANSPORT_ERRORS as exc:
        raise BackupError(
            f"backing up the media bucket s3://{source.bucket}/{source.prefix} failed: {s3.explain(exc)}"
        ) from exc
    if copier:
        report.step(
            f"  media bucket: {len(entries)} objects, "
            f"{len(copier.copied)} copied server-side into the backup bucket"
        )
    return entries


def _back_up_object(
    source, found: MediaObject, previous: UploadFile | None, copier, blob_writer
) -> UploadFile:
    sha256 = previous.sha256 if previous and previous.size == found.size else name_sha256(found.name)
    if copier:
        sha256 = copier.copy_in(found.name, found.size, sha256 or object_sha256(source, found.name))
        return UploadFile(found.name, sha256, found.size, OBJECT_MODE, found.mtime_ns, STORED_IN_BUCKET)
    if not (sha256 and blob_writer.size_of(sha256) == found.size):
        sha256, _ = stream_into_store(source, found.name, blob_writer)
    return UploadFile(found.name, sha256, found.size, OBJECT_MODE, found.mtime_ns, STORED_IN_BLOB)


def bucket_blob_problems(entries: list[UploadFile]) -> list[str]:
    """What is wrong with the backup bucket's copies of these entries (missing, size, S3's
    SHA-256), by HeadObject: nothing is downloaded."""
    if not entries:
        return []
    if not s3.configured():
        return [
            f"the set keeps {len(entries)} image(s) in the backup bucket, but BACKUP_S3_BUCKET is not set"
        ]
    client = s3.client()
    problems = []
    for sha256, size in sorted({entry.sha256: entry.size for entry in entries}.items()):
        key = s3.blob_object_key(sha256)
        try:
            head = client.head_object(Bucket=settings.BACKUP_S3_BUCKET, Key=key, ChecksumMode="ENABLED")
        except s3.TRANSPORT_ERRORS as exc:
            problems.append(f"s3://{settings.BACKUP_S3_BUCKET}/{key}: {s3.explain(exc)}")
            continue
        # S3's own SHA-256 of the copy, or (a multipart copy has none) the one it was copied under.
        stored = hex_of(head.get("ChecksumSHA256")) or head.get("Metadata", {}).get("sha256")
        if head["ContentLength"] != size:
            problems.append(
                f"s3://{settings.BACKUP_S3_BUCKET}/{key} has {head['ContentLength']} bytes, "
                f"the manifest says {size}"
            )
        elif stored != sha256:
            problems.append(
                f"s3://{settings.BACKUP_S3_BUCKET}/{key} has SHA-256 {stored or 'unknown'}: "
                "it is not the copy made"
            )
    return problems

"""Restoring the images of a set into the media bucket (MEDIA_STORAGE=s3), verify-first.

The set's objects that the live prefix lacks (or holds with another size) are copied back,
server-side from the backup bucket where both share an endpoint (else streamed; images from the
local blob store are uploaded), into a new staging prefix beside the live one,
`<MEDIA_S3_PREFIX>.restore-<set id>/`, which nginx does not serve. Each staged object is checked
(its size, and its SHA-256 as S3 computed it for the copy or checked it on receipt) before
anything live changes. The switch then copies the staged objects into the live prefix and
removes the staging prefix. Adding objects there changes nothing a visitor sees until a row
names them: names are content-addressed and immutable (the same name always holds the same
bytes), so no live object is ever overwritten with other content, and objects the set does not
list are left alone. The switch runs after the database is staged and before it is swapped;
if it fails, the database is not swapped and the objects already added stay as unreferenced,
harmless copies.
"""

import base64
import hashlib
import io
import logging
import mimetypes

from django.conf import settings

from shop.backups import blobs, s3
from shop.backups.errors import BackupError, CorruptSet
from shop.backups.manifest import STORED_IN_ARCHIVE, STORED_IN_BLOB, STORED_IN_BUCKET, UploadFile
from shop.backups.media_bucket import MediaSource, hex_of, media_source, shares_backup_endpoint
from shop.backups.progress import human_bytes

logger = logging.getLogger("shop.backups")

SHOWN_NAMES = 20  # objects named one by one in the plan (a dry run lists what would be copied)


class BucketRestore:
    """The images part of one restore: planned, staged, switched (or discarded)."""

    def __init__(self, set_id: str, entries: list[UploadFile], source: MediaSource | None = None, keys=None):
        self.source = source or media_source()
        self.keys = keys  # to read encrypted local blobs with (shop/backups/blobs.py: copy_out)
        self.set_id = set_id
        self.staging_prefix = f"{self.source.prefix}.restore-{set_id}"
        live = {found.name: found.size for found in self.source.objects()}
        restorable = [entry for entry in entries if entry.stored in (STORED_IN_BUCKET, STORED_IN_BLOB)]
        self.skipped = [entry for entry in entries if entry.stored == STORED_IN_ARCHIVE]
        self.missing = [entry for entry in restorable if live.get(entry.path) != entry.size]
        self.in_place = len(restorable) - len(self.missing)
        self.staged: list[UploadFile] = []

    def staging_key(self, name: str) -> str:
        return f"{self.staging_prefix}/{name}"

    def plan_lines(self) -> list[str]:
        where = f"s3://{self.source.bucket}/{self.source.prefix}"
        size = human_bytes(sum(entry.size for entry in self.missing))
        lines = [
            f"Uploads: the media bucket {where}/ keeps its objects; {len(self.missing)} of the set's "
            f"objects ({size}) are absent there (or differ) and would be copied back, staged under "
            f"s3://{self.source.bucket}/{self.staging_prefix}/ and checked first; {self.in_place} are "
            "in place already (content-addressed names); objects the set does not list are left alone."
        ]
        lines += [f"  would copy {entry.path} ({entry.size} bytes)" for entry in self.missing[:SHOWN_NAMES]]
        if len(self.missing) > SHOWN_NAMES:
            lines.append(f"  ... and {len(self.missing) - SHOWN_NAMES} more")
        return lines

    def warnings(self) -> list[str]:
        if not self.skipped:
            return []
        return [
            f"{len(self.skipped)} upload file(s) of the set are in its uploads.tar (made with "
            "MEDIA_STORAGE=local) and are not copied into the media bucket"
        ]

    def stage(self, report) -> None:
        """Every missing object into the staging prefix, each checked; CorruptSet or BackupError."""
        self.discard()  # a killed restore of the same set may have left some
        with report.track("staging images", sum(entry.size for entry in self.missing)) as advance:
            for entry in self.missing:
                try:
                    self._stage_one(entry)
                except s3.TRANSPORT_ERRORS as exc:
                    raise BackupError(
                        f"staging {entry.path} in the media bucket failed: {s3.explain(exc)}"
                    ) from exc
                self.staged.append(entry)
                advance(entry.size)
        report.step(
            f"  images: {len(self.staged)} staged in s3://{self.source.bucket}/{self.staging_prefix}/"
        )

    def _stage_one(self, entry: UploadFile) -> None:
        key = self.staging_key(entry.path)
        if entry.stored == STORED_IN_BUCKET and shares_backup_endpoint(self.source):
            result = s3.client().copy_object(
                Bucket=self.source.bucket,
                Key=key,
                CopySource={"Bucket": settings.BACKUP_S3_BUCKET, "Key": s3.blob_object_key(entry.sha256)},
                ChecksumAlgorithm="SHA256",
                MetadataDirective="REPLACE",
                **object_headers(entry.path),
            )
            self._check(entry, hex_of(result["CopyObjectResult"].get("ChecksumSHA256")))
        else:
            self._put(entry, key, self._read_blob(entry))
        size = self.source.client.head_object(Bucket=self.source.bucket, Key=key)["ContentLength"]
        if size != entry.size:
            raise CorruptSet(f"the staged copy of {entry.path} has {size} bytes, the set says {entry.size}")

    def _read_blob(self, entry: UploadFile) -> bytes:
        """The bytes of the entry's blob (images are small: MAX_UPLOAD_BYTES), checked."""
        if entry.stored == STORED_IN_BUCKET:
            response = s3.client().get_object(
                Bucket=settings.BACKUP_S3_BUCKET, Key=s3.blob_object_key(entry.sha256)
            )
            data = response["Body"].read()
            self._check(entry, hashlib.sha256(data).hexdigest())
            return data
        out = io.BytesIO()
        try:
            blobs.copy_out(entry.sha256, out, self.keys)  # decrypted if need be, its SHA-256 checked
        except CorruptSet as exc:
            raise CorruptSet(f"the copy of {entry.path}: {exc}: the backup's copy is damaged.") from None
        return out.getvalue()

    def _put(self, entry: UploadFile, key: str, data: bytes) -> None:
        self.source.client.put_object(
            Bucket=self.source.bucket,
            Key=key,
            Body=data,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=base64.b64encode(bytes.fromhex(entry.sha256)).decode(),  # S3 checks it
            **object_headers(entry.path),
        )

    def _check(self, entry: UploadFile, sha256: str | None) -> None:
        if sha256 != entry.sha256:
            raise CorruptSet(
                f"the copy of {entry.path} from blob {blobs.blob_key(entry.sha256)} has SHA-256 "
                f"{sha256 or 'unknown'}: the backup's copy is damaged."
            )

    def switch(self, report) -> None:
        """The staged objects into the live prefix (each checked again), then the staging removed."""
        for entry in self.staged:
            result = self.source.client.copy_object(
                Bucket=self.source.bucket,
                Key=self.source.key(entry.path),
                CopySource={"Bucket": self.source.bucket, "Key": self.staging_key(entry.path)},
                ChecksumAlgorithm="SHA256",
            )
            self._check(entry, hex_of(result["CopyObjectResult"].get("ChecksumSHA256")))
        report.step(
            f"  images: {len(self.staged)} copied into s3://{self.source.bucket}/{self.source.prefix}/"
        )
        self.discard()

    def discard(self) -> None:
        """Remove the staging prefix (what this or an earlier run of the same restore staged)."""
        listing = self.source.client.get_paginator("list_objects_v2")
        for page in listing.paginate(Bucket=self.source.bucket, Prefix=f"{self.staging_prefix}/"):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.source.client.delete_objects(
                    Bucket=self.source.bucket, Delete={"Objects": keys, "Quiet": True}
                )

    def summary(self) -> list[str]:
        return [
            f"Images: {len(self.staged)} object(s) of set {self.set_id} copied back into "
            f"s3://{self.source.bucket}/{self.source.prefix}/; {self.in_place} were in place."
        ]


def object_headers(name: str) -> dict:
    """What the shop's storage gives an image object (its type, the long-lived caching)."""
    from shop.catalog.storage import ContentAddressedS3Storage

    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return {"ContentType": content_type, **ContentAddressedS3Storage.object_parameters}


def plan_bucket_restore(set_id: str, uploads, keys=None) -> BucketRestore:
    """The images part of a restore in MEDIA_STORAGE=s3; BackupError if the set cannot give it."""
    if uploads.files is None:
        raise BackupError(
            f"set {set_id} was made before uploads were listed file by file (format 1): restore its "
            "uploads with MEDIA_STORAGE=local, or restore only its database (--only db)."
        )
    try:
        return BucketRestore(set_id, uploads.files, keys=keys)
    except s3.TRANSPORT_ERRORS as exc:
        raise BackupError(
            f"the media bucket cannot be listed: {s3.explain(exc)}. Nothing was changed."
        ) from exc

"""Backup sets on S3: streamed multipart upload with SHA-256 checksums checked by S3.

Each part is sent with its SHA-256, which S3 checks on receipt; after completing the
upload we compare the object's composite checksum (the SHA-256 of the part digests) with
the one we computed, and the full-file SHA-256 with the manifest. Only then is the set
offsite. The manifest is uploaded last, so a set without one on S3 is incomplete.
"""

import base64
import contextlib
import hashlib
import json
import math
from pathlib import Path

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)
from django.conf import settings

from shop.backups.errors import BackupError, CorruptSet, OffsiteError
from shop.backups.files import create_private_file
from shop.backups.manifest import CHUNK_SIZE, MANIFEST_NAME, is_set_id

MIN_PART_SIZE = 8 * 1024 * 1024  # held in memory while it is sent; botocore makes a few copies
MAX_PARTS = 10_000
# Any error from botocore (connection refused, timeouts, HTTP errors) makes the copy not offsite.
TRANSPORT_ERRORS = (BotoCoreError, ClientError, OSError)


def configured() -> bool:
    return bool(settings.BACKUP_S3_BUCKET)


def client():
    if not configured():
        raise BackupError("S3 is not configured: set BACKUP_S3_BUCKET (and the endpoint and credentials).")
    # Imported here, not at the top: boto3 takes about 0.1 s to import, and every manage.py
    # command imports this module (through the admin) whether it talks to S3 or not.
    import boto3
    from botocore.config import Config

    return boto3.client(
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


def upload_file(s3, path: Path, set_id: str, expected_sha256: str, report) -> None:
    bucket, key = settings.BACKUP_S3_BUCKET, object_key(set_id, path.name)
    size = path.stat().st_size
    part_size = part_size_for(size)
    upload = s3.create_multipart_upload(
        Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256", Metadata={"sha256": expected_sha256}
    )
    parts, part_digests, whole = [], [], hashlib.sha256()
    try:
        with open(path, "rb") as source, report.track(f"uploading {path.name}", size) as advance:
            number = 0
            while True:
                data = source.read(part_size)  # one part in memory while it is sent
                if not data and number:  # at least one part, also for an empty file
                    break
                number += 1
                digest = hashlib.sha256(data).digest()
                whole.update(data)
                response = s3.upload_part(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload["UploadId"],
                    PartNumber=number,
                    Body=data,
                    ChecksumSHA256=_b64(digest),
                )
                parts.append({"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": _b64(digest)})
                part_digests.append(digest)
                advance(len(data))
        if whole.hexdigest() != expected_sha256:
            raise CorruptSet(f"{path} no longer matches its manifest checksum; not uploading it.")
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
        )
    except BaseException:
        _abort_quietly(s3, bucket, key, upload["UploadId"])
        raise
    _check_uploaded(s3, key, size, expected_sha256, _b64(hashlib.sha256(b"".join(part_digests)).digest()))


def _abort_quietly(s3, bucket, key, upload_id) -> None:
    # If even the abort fails, the original error matters more; S3 can expire abandoned uploads.
    with contextlib.suppress(*TRANSPORT_ERRORS):
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def _check_uploaded(s3, key: str, size: int, sha256: str, composite: str) -> None:
    head = s3.head_object(Bucket=settings.BACKUP_S3_BUCKET, Key=key, ChecksumMode="ENABLED")
    # S3 writes the composite checksum as '<base64>-<number of parts>'.
    stored = (head.get("ChecksumSHA256") or "").split("-")[0]
    problems = []
    if head["ContentLength"] != size:
        problems.append(f"{head['ContentLength']} bytes instead of {size}")
    if head.get("Metadata", {}).get("sha256") != sha256:
        problems.append("the SHA-256 metadata is wrong")
    if stored != composite:
        problems.append(f"S3's checksum {stored or 'is missing'} instead of {composite}")
    if problems:
        where = f"s3://{settings.BACKUP_S3_BUCKET}/{key}"
        raise OffsiteError(f"{where} did not arrive intact: " + ", ".join(problems))


def upload_set(set_dir: Path, manifest: dict, report) -> None:
    """Copy a local set to S3 and verify it; OffsiteError if S3 fails in any way."""
    try:
        s3 = client()
        for name, entry in sorted(manifest["files"].items()):
            upload_file(s3, set_dir / name, manifest["id"], entry["sha256"], report)
        manifest_path = set_dir / MANIFEST_NAME
        manifest_sha = hashlib.sha256(manifest_path.read_bytes()).hexdigest()
        upload_file(s3, manifest_path, manifest["id"], manifest_sha, report)
    except TRANSPORT_ERRORS as exc:
        raise OffsiteError(f"uploading set {manifest['id']} to S3 failed: {explain(exc)}") from exc
    except CorruptSet:
        # Files of this set uploaded before the damaged one would stay behind, never listed.
        with contextlib.suppress(*TRANSPORT_ERRORS):
            delete_remote_set(s3, manifest["id"])
        raise


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


def _remote_manifest_bytes(s3, set_id: str) -> bytes:
    """The manifest exactly as uploaded; CorruptSet if it does not match its recorded SHA-256."""
    try:
        response = s3.get_object(Bucket=settings.BACKUP_S3_BUCKET, Key=object_key(set_id, MANIFEST_NAME))
        data = response["Body"].read()
    except TRANSPORT_ERRORS as exc:
        raise OffsiteError(f"cannot read the manifest of set {set_id} from S3: {explain(exc)}") from exc
    if hashlib.sha256(data).hexdigest() != response.get("Metadata", {}).get("sha256"):
        raise CorruptSet(f"the manifest of set {set_id} on S3 does not match its checksum.")
    return data


def remote_manifest(s3, set_id: str) -> dict:
    return json.loads(_remote_manifest_bytes(s3, set_id))


def remote_set_intact(s3, manifest: dict) -> bool:
    """Every file of the manifest is on S3 with the size and SHA-256 recorded at upload."""
    try:
        for name, entry in manifest["files"].items():
            head = s3.head_object(Bucket=settings.BACKUP_S3_BUCKET, Key=object_key(manifest["id"], name))
            if head["ContentLength"] != entry["size"] or head["Metadata"].get("sha256") != entry["sha256"]:
                return False
    except ClientError:
        return False
    except TRANSPORT_ERRORS as exc:
        raise OffsiteError(f"cannot check set {manifest['id']} on S3: {explain(exc)}") from exc
    return True


def download_set(s3, set_id: str, destination: Path, report) -> None:
    """Stream every file of a set (manifest first) into destination; checksums are checked later."""
    try:
        manifest_bytes = _remote_manifest_bytes(s3, set_id)
        with create_private_file(destination / MANIFEST_NAME) as out:
            out.write(manifest_bytes)
        manifest = json.loads(manifest_bytes)
        for name, entry in sorted(manifest["files"].items()):
            body = s3.get_object(Bucket=settings.BACKUP_S3_BUCKET, Key=object_key(set_id, name))["Body"]
            tracker = report.track(f"downloading {name}", entry["size"])
            with create_private_file(destination / name) as out, tracker as advance:
                for chunk in body.iter_chunks(CHUNK_SIZE):
                    out.write(chunk)
                    advance(len(chunk))
    except TRANSPORT_ERRORS as exc:
        raise OffsiteError(f"downloading set {set_id} from S3 failed: {explain(exc)}") from exc


def delete_remote_set(s3, set_id: str) -> None:
    prefix = object_key(set_id, "")
    # The manifest first: a half-deleted set must not look complete.
    s3.delete_object(Bucket=settings.BACKUP_S3_BUCKET, Key=object_key(set_id, MANIFEST_NAME))
    listing = s3.list_objects_v2(Bucket=settings.BACKUP_S3_BUCKET, Prefix=prefix)
    for item in listing.get("Contents", []):
        s3.delete_object(Bucket=settings.BACKUP_S3_BUCKET, Key=item["Key"])

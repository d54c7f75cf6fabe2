"""The images of a restore to a time: every product image the restored rows name is put into
MEDIA_ROOT, its SHA-256 checked, before the switch.

Where each one comes from: MEDIA_ROOT itself when the file is there with its hash; else the local
blob store (BACKUP_PATH/blobs); else, when S3 is configured, the same blob on S3
(`<BACKUP_S3_PREFIX>/blobs/ab/<sha256>`, uploaded by the backup sets and the continuous image
archive), fetched into the local store first by the set restore's own downloader
(s3.fetch_blobs: decrypted with the identity when it was uploaded encrypted, checked against its
name, renamed into place only when every fetched blob is good; kept encrypted in a store that
encrypts, BACKUP_ENCRYPT_LOCAL). Every image is copied out through blobs.copy_out (decrypted with
the identity when its blob is encrypted). A thumbnail is derived data: it is
made again from its image. Names are content hashes, so a file is only ever added, never changed.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from shop.backups import blobs, crypto, local, s3
from shop.backups.blobs import copy_hashing
from shop.backups.errors import BackupError, CorruptSet
from shop.backups.pitr.pgbackrest import PitrError
from shop.backups.progress import LoggingReporter
from shop.catalog import media


@dataclass
class ImagesBrought:
    named: int  # files the rows name (images and thumbnails)
    from_s3: int = 0  # images whose blob was fetched from S3
    problems: list[str] = field(default_factory=list)  # empty: every file is in place


def bring_images(names: set[str], identity: str | None = None, report=None) -> ImagesBrought:
    """Every file the rows name into MEDIA_ROOT, hash-checked; what was done and what is wrong.
    IdentityRefused, CorruptSet (a damaged blob on S3) or PitrError (S3 unreachable) stop it."""
    root = Path(settings.MEDIA_ROOT)
    images = {name: sha256 for name in sorted(names) if (sha256 := media.name_sha256(name))}
    absent = {name: sha256 for name, sha256 in images.items() if not in_place(root / name, sha256)}
    unstored = {sha256 for sha256 in absent.values() if not blobs.blob_path(sha256).is_file()}
    # Encrypted local blobs (BACKUP_ENCRYPT_LOCAL) need the identity: refused before any is copied.
    keys = blobs.keys_for(set(absent.values()) - unstored, identity) or identity
    result = ImagesBrought(len(names), fetch_from_s3(unstored, identity, report or LoggingReporter()))
    for name, sha256 in absent.items():
        if problem := bring_image(root, name, sha256, keys):
            result.problems.append(problem)
    for name in sorted(names - images.keys()):
        if not (root / name).is_file() and (problem := remake_thumbnail(root, name)):
            result.problems.append(problem)
    return result


def fetch_from_s3(wanted: set[str], identity: str | None, report) -> int:
    """Those of these blobs that S3 holds, into the local blob store; how many were fetched."""
    if not wanted or not s3.configured():
        return 0
    try:
        client = s3.client()
        found = {sha256: size for sha256, size in s3.remote_blob_sizes(client).items() if sha256 in wanted}
        if found:
            report.step(f"fetching {len(found)} image(s) missing locally from {s3.describe_target()}/blobs/")
            local.ensure_backup_root()  # the backup volume may have been lost with the server
            s3.fetch_blobs(client, found, report, identity)
    except s3.TRANSPORT_ERRORS as exc:
        raise PitrError(f"fetching images from S3 failed: {s3.explain(exc)}") from exc
    return len(found)


def file_sha256(path: Path) -> str:
    with open(path, "rb") as source, open(os.devnull, "wb") as sink:
        return copy_hashing(source, sink)[0]


def in_place(path: Path, sha256: str) -> bool:
    return path.is_file() and file_sha256(path) == sha256


def bring_image(root: Path, name: str, sha256: str, keys=None) -> str | None:
    """The image from the local blob store into MEDIA_ROOT, checked as it is copied (decrypted with
    `keys`, an identity file or identities, if the blob is encrypted); or the problem."""
    source = blobs.blob_path(sha256)
    if not source.is_file():
        where = "the blob store and on S3" if s3.configured() else "the blob store (S3 is not configured)"
        return f"{name}: missing in MEDIA_ROOT, in {where} ({blobs.blob_key(sha256)})"
    target = root / name
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".pitr-incoming-{target.name}")
    try:
        with open(temporary, "wb") as out:
            blobs.copy_out(sha256, out, keys)
            out.flush()
            os.fsync(out.fileno())
    except CorruptSet as exc:
        temporary.unlink()
        return f"{name}: {exc}"
    except BaseException:  # a wrong identity, a full disk: no half-written file left behind
        temporary.unlink(missing_ok=True)
        raise
    temporary.chmod(0o644)
    os.rename(temporary, target)
    return None


def remake_thumbnail(root: Path, name: str) -> str | None:
    """A thumbnail is derived data: made again from its image (products/thumbs/ab/<sha>-<size>.webp)."""
    from shop.catalog.images import make_thumbnail

    stem = name.rsplit("/", 1)[-1].removesuffix(".webp")
    sha256, _, size = stem.rpartition("-")
    image = next((path for path in (root / "products" / sha256[:2]).glob(f"{sha256}.*")), None)
    if image is None or not size.isdigit():
        return f"{name}: missing, and its image is not there to make it again"
    target = root / name
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(image, "rb") as source:
        target.write_bytes(make_thumbnail(source, int(size)))
    return None


def plan_lines(identity: str | None) -> list[str]:
    """Where the images will come from, for the plan: the local blob store's count and, with S3,
    how many blobs only S3 holds (which of them the restored rows name is known after the replay).
    A given identity file is read now (IdentityRefused if it cannot be), before anything stops."""
    stored = blobs.stored_names()
    lines = [
        f"images the restored rows name: from {settings.MEDIA_ROOT} when in place, else from the "
        f"blob store {blobs.store_root()} ({len(stored)} blob(s))"
    ]
    if not s3.configured():
        return [lines[0] + "; S3 is not configured: an image in neither stops the restore"]
    try:
        client = s3.client()
        remote = s3.remote_blob_sizes(client)
        only_remote = sorted(remote.keys() - stored)
        encrypted = bool(only_remote) and _encrypted(client, only_remote[0])
    except (BackupError, *s3.TRANSPORT_ERRORS) as exc:
        reason = s3.explain(exc) if isinstance(exc, s3.TRANSPORT_ERRORS) else str(exc)
        return [
            *lines,
            f"WARNING: the blobs on S3 cannot be listed ({reason}): an image missing locally stops "
            "the restore",
        ]
    lines.append(
        f"  else from S3 {s3.describe_target()}/blobs/ ({len(remote)} blob(s)): {len(only_remote)} are "
        "only there; the images among them that the restored rows name are fetched, hash-checked, "
        "before the switch"
    )
    path = crypto.identity_file(identity)
    if encrypted and path is None:
        lines.append(
            "WARNING: the blobs only S3 holds are encrypted and no identity is given (--identity FILE "
            f"or {crypto.IDENTITY_ENV}): the restore stops before the switch if it needs one of them"
        )
    elif encrypted:
        crypto.load_identities(path)
        lines.append(f"  encrypted blobs are decrypted with the identity {path}")
    return lines


def _encrypted(client, sha256: str) -> bool:
    head = client.head_object(Bucket=settings.BACKUP_S3_BUCKET, Key=s3.blob_object_key(sha256))
    return bool(head.get("Metadata", {}).get("encrypted"))

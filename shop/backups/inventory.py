"""Which backup sets exist where, and opening one (fetching it from S3 when needed)."""

import contextlib
import gc
import logging
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shop.backups import blobs, crypto, local, s3
from shop.backups.errors import BackupError, CorruptSet, OffsiteError
from shop.backups.files import make_private_dir
from shop.backups.manifest import Manifest, is_set_id, read_manifest, set_time
from shop.backups.status import read_status, set_record

logger = logging.getLogger("shop.backups")


@dataclass
class SetInfo:
    id: str
    created_at: datetime
    contents: list[str]
    size: int
    local: bool = False
    local_verified: bool | None = None  # None: never checked
    s3: bool = False
    s3_intact: bool | None = None  # None: not on S3
    offsite_verified: bool = False
    offsite_error: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def age_seconds(self) -> float:
        return (datetime.now(UTC) - self.created_at).total_seconds()

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "created_at": self.created_at.isoformat(),
            "age_seconds": round(self.age_seconds),
            "contents": self.contents,
            "size": self.size,
            "local": self.local,
            "local_verified": self.local_verified,
            "s3": self.s3,
            "s3_intact": self.s3_intact,
            "offsite_verified": self.offsite_verified,
            "offsite_error": self.offsite_error,
            "notes": self.notes,
        }


def _info(summary: dict, status: dict) -> SetInfo:
    """From a manifest (as JSON) or the plaintext index of an encrypted set."""
    record = set_record(status, summary["id"])
    offsite = record.get("offsite", {})
    return SetInfo(
        id=summary["id"],
        created_at=set_time(summary["id"]),
        contents=summary.get("contents", []),
        size=total_size(summary),
        local_verified=record.get("local_verified"),
        offsite_verified=bool(offsite.get("verified")),
        offsite_error=offsite.get("error", ""),
    )


def total_size(summary: dict) -> int:
    """Bytes of the set's own files and of the blobs it names."""
    files = sum(entry["size"] for entry in summary["files"].values())
    return files + sum(blobs.summary_blobs(summary).values())


def list_sets(source: str = "all") -> tuple[list[SetInfo], list[str]]:
    """(sets from the chosen places newest first, problems). With source "all", an unreachable
    S3 is a problem to show beside the local sets; with source "s3" it raises."""
    status = read_status()
    problems = []
    sets: dict[str, SetInfo] = {}
    if source in ("local", "all"):
        for set_id in local.local_set_ids():
            try:
                info = _info(local.local_summary(set_id), status)
            except CorruptSet as exc:
                info = SetInfo(set_id, set_time(set_id), [], 0, local_verified=False, notes=[str(exc)])
            info.local = True
            sets[set_id] = info
    if source in ("s3", "all") and s3.configured():
        try:
            _add_remote_sets(sets, status)
        except OffsiteError as exc:
            if source == "s3":
                raise
            problems.append(f"S3 could not be listed: {exc}")
    return sorted(sets.values(), key=lambda info: info.id, reverse=True), problems


def _add_remote_sets(sets: dict[str, SetInfo], status: dict) -> None:
    client = s3.client()
    present_blobs = None  # listed once, when the first set that references blobs needs it
    for set_id in s3.remote_set_ids(client):
        summary = s3.remote_summary(client, set_id)
        info = sets.setdefault(set_id, _info(summary, status))
        info.s3 = True
        if blobs.summary_blobs(summary) and present_blobs is None:
            present_blobs = s3.remote_blob_names(client)
        info.s3_intact = s3.remote_set_intact(client, summary, present_blobs)


def _remote_set_ids_once() -> list[str]:
    """S3's set IDs, with a client of its own that is freed at once: its botocore models (~15 MB)
    would otherwise stay for the whole restore (restore --latest peaked at 103 MB at 2 GB; with
    them freed, the restore's own work reuses that memory: 99 MB)."""
    client = s3.client(own_session=True)
    try:
        return s3.remote_set_ids(client)
    finally:
        del client
        gc.collect()


def latest_set_id(source: str | None) -> str:
    """The newest set ID in `source`, or in either place. If S3 is down when either will do,
    the newest local set is used: an outage offsite must not block a restore from local."""
    ids = set(local.local_set_ids()) if source in (None, "local") else set()
    s3_error = None
    if source in (None, "s3") and s3.configured():
        try:
            ids.update(_remote_set_ids_once())
        except OffsiteError as exc:
            if source == "s3" or not ids:
                raise
            s3_error = exc
    if not ids:
        where = source or "local or s3"
        raise BackupError(f"there is no backup set in {where}. Run `manage.py backup_now` first.")
    if s3_error:
        logger.warning("S3 could not be listed, using the newest local set: %s", s3_error)
    return max(ids)


def where_to_read(set_id: str, source: str | None) -> str:
    if not is_set_id(set_id):
        raise BackupError(f"{set_id!r} is not a backup set ID (like 20261128T020000Z): see list_backups.")
    if source:
        return source
    if local.set_dir(set_id).is_dir():
        return "local"
    if s3.configured():
        return "s3"
    raise BackupError(f"backup set {set_id} is not in {local.backup_root()} and S3 is not configured.")


@contextlib.contextmanager
def opened_set(set_id: str, source: str | None, report, identity: str | None = None):
    """Yield (directory, manifest, source, keys) of a set. A set from S3 is fetched, and a set
    encrypted on disk decrypted, into a temporary directory on the backup volume, removed
    afterwards; an encrypted set needs the identity (`identity` file or BACKUP_AGE_IDENTITY_FILE)
    and is refused without the right one before anything is written. `keys`, to read encrypted
    blobs with (shop/backups/blobs.py): the identities the set was opened with, else `identity`.
    Checksums are not checked here."""
    source = where_to_read(set_id, source)
    if source == "local":
        index = crypto.read_index(local.set_dir(set_id))
        if index is None:
            yield local.set_dir(set_id), local.local_manifest(set_id), "local", identity
            return
        identities = crypto.identities_for(index, identity)
    elif not s3.configured():
        raise BackupError("--source s3 was given but BACKUP_S3_BUCKET is not set.")
    directory = local.ensure_backup_root() / f"{local.FETCH_PREFIX}{set_id}"
    shutil.rmtree(directory, ignore_errors=True)
    make_private_dir(directory)
    try:
        if source == "local":
            report.step(f"Decrypting set {set_id} ...")
            yield (
                directory,
                Manifest.from_json(
                    crypto.open_sealed_set(local.set_dir(set_id), index, directory, identities, report),
                    f"the decrypted manifest of set {set_id}",
                ),
                source,
                identities,
            )
            return
        report.step(f"Fetching set {set_id} from S3 ...")
        try:
            identities = s3.download_set(s3.client(), set_id, directory, report, identity)
        except OffsiteError as exc:
            raise OffsiteError(f"{exc}. Nothing was changed; check the S3 settings and the network.") from exc
        yield directory, read_manifest(directory), "s3", identities or identity
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def newest_good_set() -> dict | None:
    """The newest local set whose last check passed, from the backup volume only (cheap: for probes)."""
    status = read_status()
    for set_id in reversed(local.local_set_ids()):
        if set_record(status, set_id).get("local_verified"):
            return {"id": set_id, "created_at": set_time(set_id)}
    return None


NOT_CONFIGURED_WARNING = (
    "offsite: not configured: backup sets are kept only in BACKUP_PATH, on this machine's disk; "
    "set BACKUP_S3_BUCKET (with BACKUP_S3_ENDPOINT_URL and credentials) for an offsite copy"
)


def offsite_state(set_id: str | None) -> dict:
    """{"offsite": "not configured" | "ok" | "not offsite", "warning": ...} for a set (the newest
    good one), from the configuration and status.json only (cheap: for probes and the admin).
    "not configured" is a warning, not a failure: local-only backups are a valid choice."""
    if not s3.configured():
        return {"offsite": "not configured", "warning": NOT_CONFIGURED_WARNING}
    record = set_record(read_status(), set_id).get("offsite", {}) if set_id else {}
    if record.get("verified"):
        return {"offsite": "ok", "target": s3.describe_target()}
    reason = record.get("error") or "not uploaded (yet)"
    return {
        "offsite": "not offsite",
        "target": s3.describe_target(),
        "warning": f"the newest good backup set is not offsite: {reason}",
    }

"""Deleting old sets, then the blobs no kept set references (mark and sweep).

Local sets go after BACKUP_LOCAL_RETENTION_DAYS, S3 sets after BACKUP_S3_RETENTION_DAYS. In
each place the newest verified set is kept whatever its age (the newest set if none is
verified), so pruning can never leave a place that had sets without one.

Blobs (shop/backups/blobs.py) are shared by sets: once the sets are pruned, every blob that no
remaining set's manifest names is deleted, locally and on S3. This runs only under the backup
lock (a backup's new blobs are named by no manifest until its set is published), and not at
all in a place where a manifest cannot be read: a blob is never deleted on a guess.
"""

import logging
from datetime import UTC, datetime, timedelta

from django.conf import settings

from shop.backups import blobs, image_archive, local, s3, status
from shop.backups.errors import BackupError, OffsiteError
from shop.backups.lock import backup_lock
from shop.backups.manifest import set_time
from shop.backups.progress import human_bytes

logger = logging.getLogger("shop.backups")


def deletable(set_ids: list[str], verified: set[str], days: int, now: datetime) -> list[str]:
    """The sets older than `days`, minus the one to keep; pure, so the rule is easy to test."""
    if not set_ids:
        return []
    keep = max(verified & set(set_ids), default=max(set_ids))
    cutoff = now - timedelta(days=days)
    return sorted(set_id for set_id in set_ids if set_id != keep and set_time(set_id) < cutoff)


def prune_now(report, now: datetime | None = None, include_s3: bool = True) -> dict[str, list[str]]:
    """Prune outside a backup run: BackupBusy at once while a backup or restore is running."""
    with backup_lock("retention"):
        return prune(report, now, include_s3)


def prune(
    report, now: datetime | None = None, include_s3: bool = True, known: dict[str, dict] | None = None
) -> dict[str, list[str]]:
    """Delete old sets, then unreferenced blobs. The caller holds the backup lock. `known`: the
    summaries (manifests as JSON) of local sets the caller holds already, not read again."""
    now = now or datetime.now(UTC)
    deleted = {"local": [], "s3": []}
    current = status.read_status()
    local_ids = local.local_set_ids()
    verified = {i for i in local_ids if status.set_record(current, i).get("local_verified")}
    for set_id in deletable(local_ids, verified, settings.BACKUP_LOCAL_RETENTION_DAYS, now):
        local.delete_local_set(set_id)
        deleted["local"].append(set_id)
    _sweep_local_blobs(report, known or {})
    remote_ids: list[str] = []
    if include_s3 and s3.configured():
        client = s3.client()
        remote_ids = s3.remote_set_ids(client)
        summaries = {i: s3.remote_summary(client, i) for i in remote_ids}
        present = s3.remote_blob_names(client)
        intact = {i for i in remote_ids if s3.remote_set_intact(client, summaries[i], present)}
        for set_id in deletable(remote_ids, intact, settings.BACKUP_S3_RETENTION_DAYS, now):
            s3.delete_remote_set(client, set_id)
            deleted["s3"].append(set_id)
            del summaries[set_id]
        _sweep_remote_blobs(client, summaries.values(), present, report)
    remaining = set(local.local_set_ids()) | (set(remote_ids) - set(deleted["s3"]))
    for set_id in (set(deleted["local"]) | set(deleted["s3"])) - remaining:
        status.forget_set(set_id)
    for place, ids in deleted.items():
        if ids:
            report.step(f"Retention: deleted {len(ids)} {place} set(s): {', '.join(ids)}")
    return deleted


def spared_blobs(summaries: list[dict]) -> set[str]:
    """Blobs the image archive wrote (shop/backups/image_archive.py) since the oldest kept set
    started are kept although no set names them yet: they wait for the next set, and a
    point-in-time restore into the kept window may need them. Older records are forgotten."""
    starts = [_started(summary) for summary in summaries]
    return image_archive.archived_since(min(starts) if starts else None)


def _started(summary: dict) -> datetime:
    try:
        return datetime.fromisoformat(summary["started_at"])
    except (KeyError, TypeError, ValueError):  # an index without it: the ID's second will do
        return set_time(summary["id"])


def _sweep_local_blobs(report, known: dict[str, dict]) -> None:
    summaries = []
    for set_id in local.local_set_ids():
        try:
            summaries.append(known.get(set_id) or local.local_summary(set_id))
        except BackupError as exc:
            logger.warning("retention: local blobs not swept: cannot read set %s (%s)", set_id, exc)
            return
    keep = spared_blobs(summaries)
    for summary in summaries:
        keep.update(blobs.summary_blobs(summary))
    count, size = blobs.sweep(keep)
    if count:
        report.step(f"Retention: deleted {count} local blob(s) ({human_bytes(size)}) no kept set uses")


def _sweep_remote_blobs(client, kept_summaries, present: set[str], report) -> None:
    summaries = list(kept_summaries)
    keep = spared_blobs(summaries)
    for summary in summaries:
        keep.update(blobs.summary_blobs(summary))
        keep.update(blobs.summary_bucket_blobs(summary))  # a media bucket's images (s3 mode)
    unused = present - keep
    if unused:
        try:
            s3.delete_remote_blobs(client, unused)
        except s3.TRANSPORT_ERRORS as exc:
            raise OffsiteError(f"deleting unused blobs from S3 failed: {s3.explain(exc)}") from exc
        report.step(f"Retention: deleted {len(unused)} blob(s) on S3 that no kept set uses")

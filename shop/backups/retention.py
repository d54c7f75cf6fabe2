"""Deleting old sets: local after BACKUP_LOCAL_RETENTION_DAYS, S3 after BACKUP_S3_RETENTION_DAYS.

In each place the newest verified set is kept whatever its age (the newest set if none is
verified), so pruning can never leave a place that had sets without one.
"""

import logging
from datetime import UTC, datetime, timedelta

from django.conf import settings

from shop.backups import local, s3, status
from shop.backups.manifest import set_time

logger = logging.getLogger("shop.backups")


def deletable(set_ids: list[str], verified: set[str], days: int, now: datetime) -> list[str]:
    """The sets older than `days`, minus the one to keep; pure, so the rule is easy to test."""
    if not set_ids:
        return []
    keep = max(verified & set(set_ids), default=max(set_ids))
    cutoff = now - timedelta(days=days)
    return sorted(set_id for set_id in set_ids if set_id != keep and set_time(set_id) < cutoff)


def prune(report, now: datetime | None = None, include_s3: bool = True) -> dict[str, list[str]]:
    now = now or datetime.now(UTC)
    deleted = {"local": [], "s3": []}
    current = status.read_status()
    local_ids = local.local_set_ids()
    verified = {i for i in local_ids if status.set_record(current, i).get("local_verified")}
    for set_id in deletable(local_ids, verified, settings.BACKUP_LOCAL_RETENTION_DAYS, now):
        local.delete_local_set(set_id)
        deleted["local"].append(set_id)
    remote_ids: list[str] = []
    if include_s3 and s3.configured():
        client = s3.client()
        remote_ids = s3.remote_set_ids(client)
        intact = {i for i in remote_ids if s3.remote_set_intact(client, s3.remote_summary(client, i))}
        for set_id in deletable(remote_ids, intact, settings.BACKUP_S3_RETENTION_DAYS, now):
            s3.delete_remote_set(client, set_id)
            deleted["s3"].append(set_id)
    remaining = set(local.local_set_ids()) | (set(remote_ids) - set(deleted["s3"]))
    for set_id in (set(deleted["local"]) | set(deleted["s3"])) - remaining:
        status.forget_set(set_id)
    for place, ids in deleted.items():
        if ids:
            report.step(f"Retention: deleted {len(ids)} {place} set(s): {', '.join(ids)}")
    return deleted

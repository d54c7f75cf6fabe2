"""Backup gauges for Prometheus, computed at scrape time from the backup volume's status.json.

Nothing is kept in memory between scrapes, so every gunicorn worker answers the same and a
restart loses nothing. Times are Unix timestamps (seconds); 0 means "never".
"""

from datetime import datetime

from django.conf import settings
from prometheus_client.core import GaugeMetricFamily

from shop.backups import alerts, local, status
from shop.backups.inventory import newest_good_set


def _timestamp(record: dict | None) -> float:
    return datetime.fromisoformat(record["at"]).timestamp() if record and record.get("at") else 0.0


HELP = {
    "last_duration_seconds": "Duration of the last good backup",
    "last_size_bytes": "Size of the last good backup set",
    "last_failure_timestamp_seconds": "Last failure, any stage",
    "sets_kept": "Backup sets on the local backup volume",
    "newest_verified_timestamp_seconds": "Start of the newest verified local set",
    "max_age_seconds": "The newest verified set is stale beyond this age",
    "drill_last_timestamp_seconds": "Last scheduled test restore (drill)",
    "drill_last_success": "Last drill: 1 passed, 0 failed, -1 none yet",
}


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"shop_backup_{name}", documentation, value=value)


def _labelled(name: str, documentation: str, label: str, values: dict[str, float]) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(f"shop_backup_{name}", documentation, labels=[label])
    for label_value, value in values.items():
        gauge.add_metric([label_value], value)
    return gauge


def _drill_result(drill: dict | None) -> float:
    return -1.0 if not drill else float(drill["ok"])


class BackupCollector:
    """A prometheus_client collector (registered per scrape by shop/metrics.py)."""

    def collect(self):
        present = local.backup_root().is_dir()
        yield _gauge("volume_present", "1 if BACKUP_PATH is visible to this process", float(present))
        if present:
            yield from self._from_status(status.read_status())

    def _from_status(self, current: dict):
        success = current.get("last_success") or {}
        yield _labelled(
            "last_success_timestamp_seconds",
            "Last successful backup (local) and offsite upload (s3)",
            "destination",
            {"local": _timestamp(success), "s3": _timestamp(current.get("last_upload_success"))},
        )
        newest = newest_good_set()
        drill = current.get("last_drill")
        values = {
            "last_duration_seconds": success.get("duration_seconds") or 0,
            "last_size_bytes": success.get("bytes") or 0,
            "last_failure_timestamp_seconds": _timestamp(current.get("last_failure")),
            "sets_kept": len(local.local_set_ids()),
            "newest_verified_timestamp_seconds": newest["created_at"].timestamp() if newest else 0.0,
            "max_age_seconds": alerts.max_age().total_seconds(),
            "drill_last_timestamp_seconds": _timestamp(drill),
            "drill_last_success": _drill_result(drill),
        }
        for name, value in values.items():
            yield _gauge(name, HELP[name], value)
        failing = {alert.name: float(alert.failing) for alert in alerts.current_alerts(current)}
        yield _labelled("alert", "1 while this backup alert is on (README: Backup alerts)", "alert", failing)
        if settings.PITR_ENABLED:
            yield from _pitr_gauges(current)
        if settings.BACKUP_ARCHIVE_IMAGES:
            yield from _image_archive_gauges(current)


def _image_archive_gauges(current: dict):
    """Images archived as they are stored (shop/backups/image_archive.py), from status.json."""
    from shop.backups.image_archive import archive_report

    report = archive_report(current)
    success = report["last_success_at"]
    values = {
        "image_archive_pending": ("Stored image files not archived yet", report["pending"]),
        "image_archive_oldest_pending_age_seconds": (
            "Seconds the oldest pending image file has waited",
            report["oldest_pending_age_seconds"],
        ),
        "image_archive_last_success_timestamp_seconds": (
            "Last image file archived (by its task or a backup)",
            datetime.fromisoformat(success).timestamp() if success else 0.0,
        ),
        "image_archive_max_age_seconds": ("The image archive alerts beyond this", report["max_age_seconds"]),
    }
    for name, (documentation, value) in values.items():
        yield _gauge(name, documentation, float(value))


def _pitr_gauges(current: dict):
    """WAL archiving and physical backups (shop/backups/pitr), from the live server and status.json."""
    from shop.backups.pitr import monitor

    state = monitor.archive_state()
    last = monitor.last_physical_backup(current)
    success = current.get("pitr_last_success")
    values = {
        "pitr_last_archived_timestamp_seconds": (
            "Last WAL segment archived (pg_stat_archiver)",
            state.last_archived_at.timestamp() if state.last_archived_at else 0.0,
        ),
        "pitr_archive_behind_seconds": (
            "Seconds archiving has stalled while WAL waits",
            state.behind_seconds,
        ),
        "pitr_archive_waiting_segments": ("Finished WAL segments not archived yet", state.waiting_segments),
        "pitr_archive_failed_total": (
            "Failed archive_command runs since the statistics reset",
            state.failed_count,
        ),
        "pitr_archive_max_age_seconds": (
            "Archiving alerts beyond this",
            monitor.max_behind().total_seconds(),
        ),
        "pitr_last_backup_timestamp_seconds": (
            "Last successful physical backup (pgBackRest)",
            _timestamp(success),
        ),
        "pitr_last_backup_success": (
            "Last physical backup: 1 passed, 0 failed, -1 none yet",
            _drill_result(last),
        ),
    }
    for name, (documentation, value) in values.items():
        yield _gauge(name, documentation, float(value))

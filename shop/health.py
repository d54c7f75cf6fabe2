"""Liveness (/healthz) and readiness (/readyz) probes for Docker, nginx and the runner."""

import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache

from shop.outage import SERVICE_NAMES, outages, service_of

logger = logging.getLogger(__name__)


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_redis() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def check_media_root() -> None:
    """Uploads can be stored: MEDIA_ROOT is writable, or (MEDIA_STORAGE=s3) the bucket answers."""
    if settings.MEDIA_STORAGE == "s3":
        from shop.catalog.storage import product_image_storage

        product_image_storage.bucket.meta.client.head_bucket(Bucket=settings.MEDIA_S3_BUCKET)
        return
    with tempfile.NamedTemporaryFile(dir=settings.MEDIA_ROOT, prefix=".readyz-"):
        pass


READINESS_CHECKS = {
    "database": check_database,
    "redis": check_redis,
    "media_root": check_media_root,  # the name predates the bucket; kept for monitors that read it
}


def run_checks() -> dict[str, str]:
    results = {}
    for name, check in READINESS_CHECKS.items():
        try:
            check()
            results[name] = "ok"
            if name in SERVICE_NAMES:
                outages.recovered(name)
        except Exception as exc:  # a probe reports every failure, whatever its type
            if service_of(exc) == name:
                outages.failed(name, exc)  # logged once per outage, not once per probe
            else:
                logger.warning("readiness check %s failed: %s", name, exc)
            results[name] = f"error: {exc.__class__.__name__}: {exc}"
    return results


def backup_freshness() -> dict:
    """The newest good (checksum-verified) local backup set and its age, from the backup volume.

    Reported by /readyz but not part of readiness: a missing or stale backup is an alert for
    the operator, not a reason to take the shop out of the load balancer.
    """
    from shop.backups.alerts import max_age as backup_max_age
    from shop.backups.inventory import newest_good_set, offsite_state

    max_age = round(backup_max_age().total_seconds())
    if not Path(settings.BACKUP_PATH).is_dir():
        reason = f"BACKUP_PATH {settings.BACKUP_PATH} does not exist here (backup volume not mounted?)"
        return {"status": "unknown", "reason": reason, "max_age_seconds": max_age}
    try:
        newest = newest_good_set()
        offsite = offsite_state(newest["id"] if newest else None)
    except Exception as exc:  # a probe reports every failure, whatever its type
        return {"status": f"error: {exc.__class__.__name__}: {exc}", "max_age_seconds": max_age}
    # "offsite": "not configured" | "ok" | "not offsite", with its "warnings": reported, never a failure.
    report = {"offsite": offsite["offsite"], "warnings": [offsite["warning"]] if "warning" in offsite else []}
    if newest is None:
        return {"status": "missing", "max_age_seconds": max_age, **report}
    age = round((datetime.now(UTC) - newest["created_at"]).total_seconds())
    return {
        "status": "ok" if age <= max_age else "stale",
        "newest_id": newest["id"],
        "age_seconds": age,
        "max_age_seconds": max_age,
        **report,
    }


def backup_report() -> dict:
    """backup_freshness() and the backup alerts that are on: "status" is "failing" while the
    latest backup, upload or drill failed. A warning in the body only, never a 503."""
    from shop.backups.alerts import failing_alerts

    report = backup_freshness()
    if report["status"] == "unknown":  # no backup volume here: nothing to judge
        return report
    try:
        failing = failing_alerts()
    except Exception as exc:  # a probe reports every failure, whatever its type
        return {**report, "alerts": {"error": f"{exc.__class__.__name__}: {exc}"}}
    report["alerts"] = {alert.name: alert.summary for alert in failing}
    report["warnings"] = [*report.get("warnings", []), *(alert.summary for alert in failing)]
    if any(alert.name != "stale" for alert in failing):
        report["status"] = "failing"
    return report


def pitr_report() -> dict:
    """WAL archiving and the newest physical backup (shop/backups/pitr/monitor.py): reported only."""
    from shop.backups.pitr.monitor import pitr_report as report
    from shop.backups.status import read_status

    try:
        return report(read_status())
    except Exception as exc:  # a probe reports every failure, whatever its type
        return {"archive": f"error: {exc.__class__.__name__}: {exc}"}


def image_archive_report() -> dict:
    """Images archived as they are stored (shop/backups/image_archive.py): reported only."""
    from shop.backups.image_archive import archive_report

    try:
        return archive_report()
    except Exception as exc:  # a probe reports every failure, whatever its type
        return {"status": f"error: {exc.__class__.__name__}: {exc}"}


@never_cache
def healthz(request):
    return JsonResponse({"status": "ok"})


@never_cache
def readyz(request):
    checks = run_checks()
    ready = all(result == "ok" for result in checks.values())
    # The status code follows only what the shop needs to serve; backups are a warning in the body.
    backup = backup_report()
    body = {"status": "ok" if ready else "unavailable", "checks": checks, "backup": backup}
    if backup["status"] != "ok":
        body["warnings"] = [f"backups: {backup['status']}"]
    if settings.PITR_ENABLED:
        body["pitr"] = pitr_report()
    if settings.BACKUP_ARCHIVE_IMAGES:
        body["image_archive"] = image_archive_report()
    response = JsonResponse(body, status=200 if ready else 503)
    if not ready:
        response["Retry-After"] = str(settings.SERVICE_UNAVAILABLE_RETRY_AFTER)
    return response

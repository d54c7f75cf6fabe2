"""Backup alerts: what is wrong with the backups now, and a mail to the site admins when that changes.

Four conditions, each read from the backup volume's status.json (never the database a restore
replaces): the latest backup failed, the latest offsite upload failed (with S3 configured), the
latest scheduled test restore (the "drill") failed, and the newest verified set is older than
`max_age()` (twice the longest gap between two runs of BACKUP_SCHEDULE, or BACKUP_MAX_AGE_HOURS).
With PITR on, WAL archiving behind and a failed physical backup; with BACKUP_ARCHIVE_IMAGES on,
a stored image waiting to be archived longer than IMAGE_ARCHIVE_MAX_AGE_MINUTES.

`check_and_notify()` (the beat task `check_backup_alerts`, and the end of every scheduled backup
and drill) mails ADMINS once when a condition starts and once when it clears: the state last
mailed is kept in status.json under "alerts", changed under the status file's lock, so two
checks at once never send the same mail twice. A mail that cannot be sent leaves the state as
it was, so the next check tries again.
"""

import logging
import smtplib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.mail import mail_admins

from shop.backups import s3, status
from shop.backups.inventory import newest_good_set
from shop.backups.schedule import longest_gap

logger = logging.getLogger("shop.backups")

TITLES = {
    "backup": "the latest backup failed",
    "upload": "the latest offsite upload (S3) failed",
    "drill": "the latest scheduled test restore failed",
    "stale": "the newest verified backup set is too old",
    "pitr_archive": "WAL archiving (point-in-time recovery) is behind",
    "pitr_backup": "the latest physical backup (pgBackRest) failed",
    "image_archive": "stored images are waiting to be archived",
}
WHAT_TO_DO = {
    "backup": "Look at the error above and the backup worker's log; `manage.py backup_now` runs one by hand.",
    "upload": "Check S3 (credentials, bucket, network); the upload is retried, the set is kept locally.",
    "drill": "The set may not restore: run `manage.py verify_backup --latest --deep` and read its error.",
    "stale": "Is the backup worker running, and Celery beat? `manage.py list_backups` shows the sets.",
    "pitr_archive": "Check the pgBackRest repositories (backup volume space and permissions, S3) and "
    "pgBackRest's log; orders are still taken, but the newest ones cannot be recovered to a time yet.",
    "pitr_backup": "Read the error above and the backup worker's log; the WAL archive alone cannot be "
    "restored without a physical backup to replay it onto.",
    "image_archive": "Check S3 and the backup volume (space, permissions) and the worker's log; orders "
    "are still taken, the task retries, and the next backup stores whatever is still missing.",
}


@dataclass(frozen=True)
class Alert:
    name: str
    failing: bool
    summary: str

    def as_json(self) -> dict:
        return {"failing": self.failing, "summary": self.summary}


def max_age() -> timedelta:
    """How old the newest verified set may be: BACKUP_MAX_AGE_HOURS, or twice the schedule's interval."""
    if settings.BACKUP_MAX_AGE_HOURS:
        return timedelta(hours=settings.BACKUP_MAX_AGE_HOURS)
    return 2 * longest_gap(settings.BACKUP_CRONTAB)


def current_alerts(current: dict | None = None, now: datetime | None = None) -> list[Alert]:
    """Every condition, failing or not, from `current` (status.json's content) or the file."""
    current = status.read_status() if current is None else current
    now = now or datetime.now(UTC)
    alerts = [_result_alert(current, "backup", "last_backup"), _result_alert(current, "drill", "last_drill")]
    if s3.configured():  # an upload failure recorded before S3 was switched off is no alert
        alerts.append(_result_alert(current, "upload", "last_upload"))
    alerts.append(_stale_alert(current, now))
    if settings.PITR_ENABLED:
        alerts += _pitr_alerts(current)
    if settings.BACKUP_ARCHIVE_IMAGES:
        alerts.append(_image_archive_alert(current, now))
    return alerts


def failing_alerts(current: dict | None = None, now: datetime | None = None) -> list[Alert]:
    return [alert for alert in current_alerts(current, now) if alert.failing]


def _result_alert(current: dict, name: str, key: str) -> Alert:
    result = current.get(key)
    if not result:
        return Alert(name, False, "no attempt recorded yet")
    where = f" (set {result['id']})" if result.get("id") else ""
    if result["ok"]:
        return Alert(name, False, f"ok at {result['at']}{where}")
    return Alert(name, True, f"{TITLES[name]} at {result['at']}{where}: {result['error']}")


def _stale_alert(current: dict, now: datetime) -> Alert:
    limit = max_age()
    newest = newest_good_set()
    if newest is None:
        # A new installation has no set yet: count from when the alerts started watching.
        since = current.get("alerts", {}).get("watching_since")
        start = datetime.fromisoformat(since) if since else now
        summary = f"there is no verified backup set (alert after {_hours(limit)} without one)"
        return Alert("stale", now - start > limit, summary)
    age = now - newest["created_at"]
    summary = f"the newest verified set, {newest['id']}, is {_hours(age)} old (alert beyond {_hours(limit)})"
    return Alert("stale", age > limit, summary)


def _pitr_alerts(current: dict) -> list[Alert]:
    from shop.backups.pitr import monitor  # reads the live server: only with PITR on

    state = monitor.archive_state()
    behind = bool(state.error) or state.behind_seconds > monitor.max_behind().total_seconds()
    return [
        Alert("pitr_archive", behind, monitor.archive_summary(state)),
        _result_alert(current, "pitr_backup", "pitr_last_backup"),
    ]


def _image_archive_alert(current: dict, now: datetime) -> Alert:
    from shop.backups.image_archive import archive_report

    report = archive_report(current, now)
    return Alert("image_archive", report["status"] != "ok", report["summary"])


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f} hours"


def check_and_notify(now: datetime | None = None) -> list[str]:
    """Mail ADMINS about every condition that started or cleared since the last check; the subjects."""
    now = now or datetime.now(UTC)
    sent = []
    with status.updating() as current:
        state = current.setdefault("alerts", {})
        state.setdefault("watching_since", now.isoformat(timespec="seconds"))
        for alert in current_alerts(current, now):
            if alert.failing == state.get(alert.name, {}).get("failing", False):
                continue
            subject = _subject(alert)
            if _notify(subject, _message(alert)):
                state[alert.name] = {"failing": alert.failing, "since": status.now_iso(), **alert.as_json()}
                sent.append(subject)
    return sent


def _subject(alert: Alert) -> str:
    if alert.failing:
        return f"BACKUP ALERT: {TITLES[alert.name]}"
    return f"Backups recovered: no longer true that {TITLES[alert.name]}"


def _message(alert: Alert) -> str:
    lines = [f"{settings.SHOP_NAME}: {alert.summary}."]
    if alert.failing:
        lines.append(WHAT_TO_DO[alert.name])
    lines.append("The admin's Backups page and /readyz show the current state.")
    return "\n\n".join(lines)


def _notify(subject: str, message: str) -> bool:
    """Log and mail; False when the mail could not be handed to the mail server."""
    logger.log(logging.WARNING if subject.startswith("BACKUP ALERT") else logging.INFO, "%s", subject)
    if not settings.ADMINS:
        logger.warning("backup alert not mailed: DJANGO_ADMINS is empty (set it to receive these)")
        return True
    try:
        mail_admins(subject, message, fail_silently=False)
    except (OSError, smtplib.SMTPException) as exc:
        logger.error("could not mail the backup alert %r to ADMINS: %s; the next check retries", subject, exc)
        return False
    return True

"""Physical backups with pgBackRest (the beat task `pitr_backup`): full weekly, differential
daily by default (PITR_FULL_SCHEDULE, PITR_DIFF_SCHEDULE). pgBackRest expires what the
retention settings no longer need after each backup (see config.py)."""

import logging
import time

from django.conf import settings

from shop.backups import status
from shop.backups.pitr import pgbackrest
from shop.backups.pitr.config import repositories
from shop.backups.pitr.pgbackrest import PitrError

logger = logging.getLogger("shop.backups")
KINDS = ("full", "diff", "incr")
STATUS_KEY = "pitr_last_backup"


def run_physical_backup(kind: str = "full") -> dict:
    """One backup to every configured repository; recorded in status.json either way."""
    if kind not in KINDS:
        raise PitrError(f"unknown backup type {kind!r}: choose from {', '.join(KINDS)}")
    pgbackrest.require_enabled()
    began = time.monotonic()
    try:
        for repo in repositories(settings.BACKUP_S3_BUCKET, settings.BACKUP_S3_ENDPOINT_URL or ""):
            timeout = settings.BACKUP_PG_TIMEOUT or None
            pgbackrest.run(f"--repo={repo}", f"--type={kind}", "backup", timeout=timeout)
    except PitrError as exc:
        record(kind, ok=False, error=str(exc))
        raise
    outcome = record(kind, ok=True, duration_seconds=round(time.monotonic() - began, 1))
    logger.info("pgBackRest %s backup done in %.1f s", kind, outcome["duration_seconds"])
    return outcome


def record(kind: str, ok: bool, error: str = "", duration_seconds: float | None = None) -> dict:
    outcome = {
        "ok": ok,
        "at": status.now_iso(),
        "kind": kind,
        "error": error,
        "duration_seconds": duration_seconds,
    }
    try:
        with status.updating() as current:
            current[STATUS_KEY] = outcome
            if ok:
                current["pitr_last_success"] = outcome
    except OSError:
        logger.exception("could not record the pgBackRest backup in status.json")
    return outcome

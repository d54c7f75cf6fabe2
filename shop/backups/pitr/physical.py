"""Physical backups with pgBackRest (the beat task `pitr_backup`): full weekly, differential
daily by default (PITR_FULL_SCHEDULE, PITR_DIFF_SCHEDULE). pgBackRest expires what the
retention settings no longer need after each backup (see config.py). The runner's first full
backup, when it makes the stanza, comes through here too (`manage.py pitr_backup --missing`), so
the monitoring's "last physical backup" knows it."""

import logging
import time

from django.conf import settings

from shop.backups import status
from shop.backups.pitr import pgbackrest, repository
from shop.backups.pitr.config import repositories
from shop.backups.pitr.pgbackrest import PitrError

logger = logging.getLogger("shop.backups")
KINDS = ("full", "diff", "incr")
STATUS_KEY = "pitr_last_backup"
LOCK_BUSY = "ERROR: [050]"  # pgBackRest's LockAcquireError


def make_stanza(wait_seconds: float = 60) -> None:
    """stanza-create: idempotent; it makes the stanza in any repository that has none (new or lost).
    It needs the stanza's archive lock, which asynchronous archive-push holds while it pushes: a
    busy lock is tried again for `wait_seconds`."""
    pgbackrest.require_enabled()
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            pgbackrest.run("stanza-create", timeout=300)
            return
        except PitrError as exc:
            if LOCK_BUSY not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def repositories_without_backup() -> list[int]:
    """The configured repositories that hold no finished backup (a new stanza, a lost repository)."""
    held = {backup["repo"] for backup in repository.backups(pgbackrest.info()) if not backup["error"]}
    return [repo for repo in configured_repositories() if repo not in held]


def configured_repositories() -> list[int]:
    return repositories(settings.BACKUP_S3_BUCKET, settings.BACKUP_S3_ENDPOINT_URL or "")


def run_physical_backup(kind: str = "full", repos: list[int] | None = None) -> dict:
    """One backup to every configured repository (or to `repos`); recorded in status.json either way."""
    if kind not in KINDS:
        raise PitrError(f"unknown backup type {kind!r}: choose from {', '.join(KINDS)}")
    pgbackrest.require_enabled()
    began = time.monotonic()
    try:
        for repo in configured_repositories() if repos is None else repos:
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

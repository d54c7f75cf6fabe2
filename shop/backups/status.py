"""Backup status kept on the backup volume (BACKUP_PATH/status.json), not in the database.

A restore replaces the database; what we know about backups must survive it. Writers take
an flock around read-modify-write; readers see a whole file (it is replaced atomically).
"""

import contextlib
import fcntl
import json
import logging
import os
from datetime import UTC, datetime

from shop.backups.files import PRIVATE_FILE_MODE
from shop.backups.local import backup_root, ensure_backup_root
from shop.backups.manifest import write_json_atomic

STATUS_NAME = "status.json"
logger = logging.getLogger("shop.backups")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_status() -> dict:
    try:
        return json.loads((backup_root() / STATUS_NAME).read_text())
    except FileNotFoundError:
        return {}
    except ValueError:
        return {"unreadable": True}


def _private_opener(path, flags):
    fd = os.open(path, flags, PRIVATE_FILE_MODE)
    os.fchmod(fd, PRIVATE_FILE_MODE)
    return fd


@contextlib.contextmanager
def _updating():
    root = ensure_backup_root()
    with open(root / ".status.lock", "a", opener=_private_opener) as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        status = read_status()
        status.pop("unreadable", None)
        status.setdefault("sets", {})
        yield status
        write_json_atomic(root / STATUS_NAME, status)


def set_record(status: dict, set_id: str) -> dict:
    return status.get("sets", {}).get(set_id, {})


def record_success(set_id: str) -> None:
    with _updating() as status:
        status["last_success"] = {"id": set_id, "at": now_iso()}


def record_failure(stage: str, error: Exception, set_id: str | None = None) -> None:
    """Best effort: on a full backup volume this write can fail too, and must not hide `error`."""
    try:
        with _updating() as status:
            status["last_failure"] = {"stage": stage, "error": str(error), "id": set_id, "at": now_iso()}
    except OSError:
        logger.exception("could not record the failure in %s", STATUS_NAME)


def record_local_check(set_id: str, ok: bool, error: str = "") -> None:
    with _updating() as status:
        record = status["sets"].setdefault(set_id, {})
        record["local_verified"] = ok
        record["local_checked_at"] = now_iso()
        record["local_error"] = error


def record_offsite(set_id: str, ok: bool, error: str = "") -> None:
    with _updating() as status:
        offsite = status["sets"].setdefault(set_id, {}).setdefault("offsite", {"attempts": 0})
        offsite["attempts"] += 1
        offsite["last_attempt_at"] = now_iso()
        offsite["verified"] = ok
        offsite["error"] = error
        if ok:
            offsite["verified_at"] = offsite["last_attempt_at"]


def record_test_restore(set_id: str) -> None:
    with _updating() as status:
        status["last_test_restore"] = {"id": set_id, "at": now_iso()}


def record_restore(set_id: str, summary: list[str]) -> None:
    with _updating() as status:
        status["last_restore"] = {"id": set_id, "at": now_iso(), "summary": summary}


def forget_set(set_id: str) -> None:
    with _updating() as status:
        status["sets"].pop(set_id, None)

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
HISTORY_LENGTH = 120  # sets drawn in the admin's chart; kept here, as pruned sets leave no trace
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


# For shop/backups/alerts.py, which changes the alert state under the same lock.
updating = _updating


def set_record(status: dict, set_id: str) -> dict:
    return status.get("sets", {}).get(set_id, {})


def record_success(set_id: str, duration_seconds: float | None = None, size_bytes: int | None = None) -> None:
    """A set was written and published; its duration and size feed the metrics and the chart."""
    with _updating() as status:
        run = {"id": set_id, "at": now_iso(), "duration_seconds": duration_seconds, "bytes": size_bytes}
        status["last_success"] = run
        status["last_backup"] = {"ok": True, "at": run["at"], "id": set_id, "error": ""}
        status["history"] = [*status.get("history", []), run][-HISTORY_LENGTH:]


# The outcome of the latest attempt of each kind (what the alerts look at), by failure stage;
# "verify" is recorded only by the scheduled test restore (the drill, tasks.verify_latest_set).
RESULT_KEYS = {"backup": "last_backup", "upload": "last_upload", "verify": "last_drill"}


def record_failure(stage: str, error: Exception, set_id: str | None = None) -> None:
    """Best effort: on a full backup volume this write can fail too, and must not hide `error`."""
    try:
        with _updating() as status:
            status["last_failure"] = {"stage": stage, "error": str(error), "id": set_id, "at": now_iso()}
            if stage in RESULT_KEYS:
                status[RESULT_KEYS[stage]] = {"ok": False, "at": now_iso(), "id": set_id, "error": str(error)}
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
            status["last_upload"] = {"ok": True, "at": offsite["verified_at"], "id": set_id, "error": ""}
            status["last_upload_success"] = {"id": set_id, "at": offsite["verified_at"]}


def record_test_restore(set_id: str) -> None:
    with _updating() as status:
        at = now_iso()
        status["last_test_restore"] = {"id": set_id, "at": at}
        status["last_drill"] = {"ok": True, "at": at, "id": set_id, "error": ""}


def record_restore(set_id: str, summary: list[str]) -> None:
    with _updating() as status:
        status["last_restore"] = {"id": set_id, "at": now_iso(), "summary": summary}


def forget_set(set_id: str) -> None:
    with _updating() as status:
        status["sets"].pop(set_id, None)

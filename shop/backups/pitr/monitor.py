"""How far WAL archiving is behind, from the live server's pg_stat_archiver (cheap enough for
/readyz), and the newest physical backup (status.json, written by physical.py).

"Behind" is the time since archiving last made progress while a finished WAL segment waits to
be archived (the segment being written does not count: archive_timeout closes it). An idle shop
writes no WAL, archives nothing and is not behind.

With two repositories, pgBackRest fails a segment's push when either fails, so pg_stat_archiver
cannot say which one: pgBackRest's own word (archive-async leaves `<segment>.error` in its
spool directory, "repo2: [HostConnectError] ...") goes into the summary. A segment that failed
on repo2 alone is on repo1 already; PostgreSQL keeps it until both have it.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection

from shop.backups.pitr.config import STANZA
from shop.backups.pitr.physical import STATUS_KEY

SEGMENTS_PER_LOG = 0x100000000 // (16 * 1024 * 1024)  # WAL segments of 16 MB (the default)


@dataclass(frozen=True)
class ArchiveState:
    last_archived_at: datetime | None
    last_archived_wal: str
    last_failed_at: datetime | None
    last_failed_wal: str
    failed_count: int
    waiting_segments: int  # finished segments not archived yet
    behind_seconds: float
    error: str = ""  # the server could not be asked
    push_error: str = ""  # pgBackRest's message for the newest failed push (which repository, why)


def segment_number(wal_name: str) -> int:
    """The position of a WAL segment (the timeline left out)."""
    return int(wal_name[8:16], 16) * SEGMENTS_PER_LOG + int(wal_name[16:24], 16)


QUERY = """
SELECT last_archived_wal, last_archived_time, last_failed_wal, last_failed_time, failed_count,
       stats_reset, pg_walfile_name(pg_current_wal_lsn()), now()
FROM pg_stat_archiver
"""


def archive_state() -> ArchiveState:
    try:
        with connection.cursor() as cursor:
            cursor.execute(QUERY)
            archived_wal, archived_at, failed_wal, failed_at, failed_count, reset_at, current_wal, now = (
                cursor.fetchone()
            )
    except DatabaseError as exc:
        return ArchiveState(None, "", None, "", 0, 0, 0.0, error=f"cannot read pg_stat_archiver: {exc}")
    current = segment_number(current_wal)
    last = segment_number(archived_wal) if archived_wal and len(archived_wal) == 24 else None
    # Segments before the one being written that were not archived (none archived since the
    # statistics were reset: count from the one being written only if a failure shows one waits).
    waiting = current - 1 - last if last is not None else (1 if failed_wal else 0)
    waiting = max(waiting, 0)
    since = archived_at or reset_at or now
    behind = (now - since).total_seconds() if waiting else 0.0
    return ArchiveState(
        archived_at,
        archived_wal or "",
        failed_at,
        failed_wal or "",
        failed_count,
        waiting,
        behind,
        push_error=push_error() if waiting else "",
    )


def spool_path(config_file: Path) -> Path | None:
    """pgBackRest's spool-path, from its configuration file (None when it cannot be read here)."""
    try:
        lines = config_file.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition("=")
        if name.strip() == "spool-path":
            return Path(value.strip())
    return None


def push_error() -> str:
    """The message of the newest `<segment>.error` archive-async left (first line: the code)."""
    spool = spool_path(Path(settings.PITR_PGBACKREST_CONFIG))
    if spool is None:
        return ""
    try:
        newest = max((spool / "archive" / STANZA / "out").glob("*.error"), default=None)
        lines = newest.read_text().splitlines() if newest else []
    except OSError:
        return ""
    message = " ".join(line.strip() for line in lines[1:] if line.strip())
    return f"{newest.stem}: {message[:400]}" if message else ""


def max_behind() -> timedelta:
    return timedelta(minutes=settings.PITR_ARCHIVE_MAX_AGE_MINUTES)


def last_physical_backup(current: dict) -> dict | None:
    return current.get(STATUS_KEY)


def archive_summary(state: ArchiveState) -> str:
    if state.error:
        return state.error
    last = f"last WAL {state.last_archived_wal} archived at {_iso(state.last_archived_at)}"
    if not state.last_archived_at:
        last = "no WAL archived yet"
    if state.waiting_segments:
        stalled = f"archiving stalled for {state.behind_seconds:.0f} s"
        text = f"{state.waiting_segments} WAL segment(s) waiting, {stalled}; {last}"
    else:
        text = f"archiving is up to date; {last}"
    if state.last_failed_at and (not state.last_archived_at or state.last_failed_at > state.last_archived_at):
        text += f"; the latest attempt FAILED at {_iso(state.last_failed_at)} ({state.last_failed_wal})"
    if state.push_error:
        text += f"; pgBackRest: {state.push_error}"
    return text


def _iso(moment: datetime | None) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else "never"


def pitr_report(current: dict) -> dict:
    """For /readyz: archiving and the newest physical backup (warnings only, never a 503)."""
    state = archive_state()
    backup = last_physical_backup(current) or {}
    return {
        "archive": "behind" if state.error or state.behind_seconds > max_behind().total_seconds() else "ok",
        "archive_summary": archive_summary(state),
        "last_archived_at": _iso(state.last_archived_at),
        "waiting_segments": state.waiting_segments,
        "behind_seconds": round(state.behind_seconds),
        "failed_count": state.failed_count,
        "last_physical_backup": {key: backup.get(key) for key in ("at", "kind", "ok")} if backup else None,
    }

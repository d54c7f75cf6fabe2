"""One backup or restore at a time: a PostgreSQL advisory lock.

The lock lives in a session on the maintenance database, so it goes away with the process
that holds it, also when that process is SIGKILLed (the server ends the session when the
socket closes). It is not taken in the shop database, because a restore terminates every
session there.
"""

import contextlib
import hashlib
import os
import time

from shop.backups.database import live_database_name, maintenance_connection
from shop.backups.errors import BackupBusy


def lock_key() -> int:
    """A signed 64-bit key per shop database, so two shops on one server do not collide."""
    digest = hashlib.sha256(f"shop.backups:{live_database_name()}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _holder(conn, key: int) -> str:
    classid, objid = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    row = conn.execute(
        """
        SELECT a.application_name, a.pid, a.backend_start FROM pg_locks l
        JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 1
        """,
        [classid, objid],
    ).fetchone()
    if row is None:
        return "holder already gone"
    return f"{row[0]}, PostgreSQL backend {row[1]} since {row[2]:%Y-%m-%d %H:%M:%S %Z}"


def _try_lock(conn, key: int) -> bool:
    """pg_try_advisory_lock, asked again for up to a second while the holder is already gone:
    a process that has just exited (SIGKILLed, say) may keep its lock for a moment, until the
    server has ended its session."""
    for _ in range(10):
        if conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()[0]:
            return True
        if _holder(conn, key) != "holder already gone":
            return False
        time.sleep(0.1)
    return False


@contextlib.contextmanager
def backup_lock(purpose: str):
    """Hold the lock for the block, or raise BackupBusy at once (a second run skips, never waits)."""
    conn = maintenance_connection(f"shop-backups: {purpose} (pid {os.getpid()})")
    locked = False
    try:
        key = lock_key()
        locked = _try_lock(conn, key)
        if not locked:
            raise BackupBusy(
                f"another backup or restore is running ({_holder(conn, key)}); "
                "this one was skipped. Try again when it has finished."
            )
        yield
    finally:
        if locked:
            # Released before the close returns, so a command run right after ours gets it;
            # closing alone ends the session asynchronously, a moment later.
            with contextlib.suppress(Exception):
                conn.execute("SELECT pg_advisory_unlock(%s)", [key])
        conn.close()  # ends the session, which releases the lock in any case

"""Close the current WAL segment every PITR_ARCHIVE_TIMEOUT seconds, so it is archived: the RPO.

PostgreSQL's archive_timeout is meant to do this, and the runner sets it, but PostgreSQL 15.20
(Debian bookworm) on our machines never honoured it: its checkpointer slept for the whole
checkpoint_timeout (seen with gdb: epoll_wait(..., 300000) with XLogArchiveTimeout = 5), and a
busy shop wrote 20 s of orders into one segment that was never archived. So the runner runs
this loop next to PostgreSQL: `pg_switch_wal()` does nothing when no WAL was written since the
last switch, so an idle shop does not fill the archive with empty segments.

Plain Python (psycopg, no Django): `python -m shop.backups.pitr.walswitch`, configured by
PITR_ARCHIVE_TIMEOUT and the PG* variables of libpq (a superuser: pg_switch_wal is theirs).
"""

import os
import sys
import time

import psycopg


def switch_forever(interval: float) -> None:
    connection = None
    while True:
        time.sleep(interval)
        try:
            if connection is None or connection.closed:
                connection = psycopg.connect(autocommit=True, connect_timeout=5, application_name="walswitch")
            connection.execute("SELECT pg_switch_wal()")
        except psycopg.Error as exc:
            # PostgreSQL stopped (a restore, a restart): try again at the next tick.
            print(f"walswitch: {exc.__class__.__name__}: {str(exc).strip()}", file=sys.stderr, flush=True)
            if connection is not None:
                connection.close()
            connection = None


if __name__ == "__main__":
    switch_forever(float(os.environ.get("PITR_ARCHIVE_TIMEOUT") or 60))

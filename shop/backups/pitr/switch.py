"""The switch of PostgreSQL data directories at the end of a restore to a time, crash-safe.

The restored directory (`<live>.pitr-<stamp>`, next to the live one) is complete and checked
before the switch starts. A small journal (`<live>.pitr-switch.json`) is written first; then two
renames: live -> `<live>.before-pitr-<stamp>` (kept for rollback), restored -> live. Killed at any
point, `finish_interrupted_switch()` (run by the next restore and by the runner before it starts
PostgreSQL) completes it: the journal exists only once the restored directory is good, so a
switch is always finished, never undone. Without a journal nothing was switched: a leftover
`<live>.pitr-<stamp>` is an unfinished restore and may be deleted.

Plain Python (no Django): the runner calls it before it starts anything.
"""

import json
import os
from pathlib import Path

from shop.backups.durable import fsync_directory


def journal_path(live: Path) -> Path:
    return live.with_name(f"{live.name}.pitr-switch.json")


def previous_path(live: Path, stamp: str) -> Path:
    return live.with_name(f"{live.name}.before-pitr-{stamp}")


def restored_path(live: Path, stamp: str) -> Path:
    return live.with_name(f"{live.name}.pitr-{stamp}")


def _write_journal(live: Path, facts: dict) -> None:
    path = journal_path(live)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w") as out:
        json.dump(facts, out)
        out.flush()
        os.fsync(out.fileno())
    os.rename(temporary, path)
    fsync_directory(live.parent)


def switch(live: Path, restored: Path, stamp: str) -> Path | None:
    """Make `restored` the live data directory; return where the previous one is (None: there was none)."""
    previous = previous_path(live, stamp)
    _write_journal(live, {"live": str(live), "restored": str(restored), "previous": str(previous)})
    _finish(live, restored, previous)
    return previous if previous.exists() else None


def _finish(live: Path, restored: Path, previous: Path) -> None:
    if restored.exists():
        if live.exists():
            os.rename(live, previous)
            fsync_directory(live.parent)
        os.rename(restored, live)
        fsync_directory(live.parent)
    journal_path(live).unlink(missing_ok=True)
    fsync_directory(live.parent)


def finish_interrupted_switch(live: Path) -> str | None:
    """Complete a switch that was killed midway; what was done, or None if there was nothing to do."""
    path = journal_path(live)
    if not path.exists():
        return None
    facts = json.loads(path.read_text())
    restored, previous = Path(facts["restored"]), Path(facts["previous"])
    _finish(live, restored, previous)
    return (
        f"finished an interrupted point-in-time restore: {live} is the restored cluster, "
        f"the previous one is {previous}"
    )

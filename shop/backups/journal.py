"""The restore journal: what a running restore has staged and swapped, so that a restore killed
at any step can be finished or undone afterwards (shop/backups/recovery.py).

`BACKUP_PATH/restore-journal.json` exists only while a restore is staging or swapping, or after
one was killed. It is rewritten atomically (a new file, fsynced, renamed over the old one, the
directory fsynced) at every step, before the restore goes on, and holds:

- the set, the parts restored, when and by which process;
- what is staged: the staging database and the staging directory in MEDIA_ROOT;
- where the previous data goes for rollback: the `<db>__pre_restore_<time>` database and the
  `MEDIA_ROOT/.pre-restore-<time>/` directory;
- the step reached (`STEPS`) and what each step recorded: whether there was a live database
  when the database swap started, the staged entries when the uploads swap started, the entry
  each move moved;
- once one is taken, the decision: "finish" or "undo" (see recovery.py), so a recovery killed
  in turn goes on in the same direction.

What has been swapped is read from the databases and directories themselves when recovering (a
rename is atomic, so each one either happened or did not); the journal says where to look.

For the tests, `SHOP_RESTORE_FAILPOINT=<step>` makes the process SIGKILL itself right after
that step is durable in the journal, at its first occurrence: a real crash at a known point.
"""

import json
import os
import signal
from datetime import UTC, datetime
from pathlib import Path

from shop.backups import local
from shop.backups.errors import BackupError
from shop.backups.manifest import write_json_atomic

JOURNAL_NAME = "restore-journal.json"
FAILPOINT_VARIABLE = "SHOP_RESTORE_FAILPOINT"

# In the order a restore takes them; the uploads moves repeat once per top-level entry.
STEPS = (
    "staging",  # staging database and directory being made; nothing live touched
    "staged",  # both staged and checked; nothing live touched
    "db-swap-started",  # records had_live
    "db-live-moved-aside",  # live -> previous
    "db-swapped",  # staged -> live
    "uploads-swap-started",  # records the staged entries
    "uploads-previous-created",
    "uploads-moved-out",  # one live entry -> previous
    "uploads-moved-in",  # one staged entry -> live
    "uploads-swapped",
    "finished",  # the swap is complete and durable; only the journal is left
    "undoing",  # the restore failed and is undoing its swaps itself
    "recovering",  # a recovery took its decision (finish or undo)
)


def journal_path() -> Path:
    return local.backup_root() / JOURNAL_NAME


class RestoreJournal:
    def __init__(self, data: dict):
        self.data = data

    @classmethod
    def begin(cls, **facts) -> "RestoreJournal":
        """Start the journal of a new restore (step "staging"); refuses to replace an unfinished one."""
        if journal_path().exists():
            raise BackupError(
                f"{journal_path()} exists: an interrupted restore was not recovered. "
                "Run `manage.py restore_backup --recover` first."
            )
        local.ensure_backup_root()
        journal = cls({**facts, "pid": os.getpid(), "started_at": datetime.now(UTC).isoformat()})
        journal.record("staging")
        return journal

    @classmethod
    def load(cls) -> "RestoreJournal | None":
        path = journal_path()
        try:
            return cls(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise BackupError(
                f"the restore journal {path} cannot be read ({exc}): an interrupted restore may have "
                "left the live data half swapped. Look at it and at the databases and MEDIA_ROOT by hand."
            ) from exc

    @property
    def step(self) -> str:
        return self.data["step"]

    def reached(self, step: str) -> bool:
        """Whether the restore recorded `step` (or later)."""
        return step in self.data.get("steps", [])

    def record(self, step: str, **facts) -> None:
        """Make `step` (and its facts) durable, then go on; a failpoint may kill us right here."""
        if step not in STEPS:
            raise ValueError(f"unknown restore journal step {step!r}")
        self.data.update(facts)
        self.data["step"] = step
        steps = self.data.setdefault("steps", [])
        if step not in steps:
            steps.append(step)
        path = journal_path()
        write_json_atomic(path, self.data)
        local.fsync_directory(path.parent)
        _failpoint(step)

    def remove(self) -> None:
        journal_path().unlink(missing_ok=True)
        local.fsync_directory(journal_path().parent)


def _failpoint(step: str) -> None:
    if os.environ.get(FAILPOINT_VARIABLE) == step:
        os.kill(os.getpid(), signal.SIGKILL)

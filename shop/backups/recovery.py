"""Finishing or undoing a restore that was killed (SIGKILL, OOM, a power cut) while it ran.

`restore_backup --recover` runs this, and so does every backup, restore and verify, under the
backup lock and before anything else: the lock is held by a restore for its whole run, so a
journal (shop/backups/journal.py) found under the lock belongs to a dead process.

The rule: **finish when restored data was already live, undo otherwise.**

- Killed while staging, or staged with nothing swapped yet: undo (drop the staging database,
  remove the staging directory). The live data was never touched.
- Killed between the two database renames (the live database renamed aside, the restored one
  not yet in its place): undo; the previous database gets its name back. Nothing restored
  was live.
- Killed once the restored database had its place (at any point of the uploads swap that
  follows, or after it): finish. The shop may already have written orders into the restored
  database, which an undo would throw away; the staged uploads are complete and checked
  (flushed to disk before the swap began), so the remaining entries are moved in.
- An uploads-only restore: finish once a staged entry was moved in, undo before.
- A restore that was undoing itself when it died (its undo failed, or it was killed while
  undoing): undo.

The decision is written to the journal before anything is changed, so a recovery that is
killed in turn is taken up in the same direction by the next one. Either way the previous
database and uploads stay where a finished restore keeps them (`<db>__pre_restore_<time>`,
`MEDIA_ROOT/.pre-restore-<time>/`) with the same rollback commands; staging is removed, and the
journal last. A recovery with no journal is a no-op.
"""

import logging
import os
import shutil
from pathlib import Path

from django.db import connections

from shop.backups import status
from shop.backups.database import DatabaseSwap
from shop.backups.durable import flush_to_disk
from shop.backups.errors import BackupError
from shop.backups.journal import RestoreJournal, journal_path
from shop.backups.lock import backup_lock
from shop.backups.swap import UploadsSwap

logger = logging.getLogger("shop.backups")


def recover(report) -> list[str]:
    """`restore_backup --recover`: take the lock, then finish or undo an interrupted restore."""
    with backup_lock("restore recovery"):
        return recover_interrupted_restore(report)


def recover_interrupted_restore(report) -> list[str]:
    """Finish or undo an interrupted restore; what was done, line by line ([] when there was none).
    Call only while holding the backup lock."""
    journal = RestoreJournal.load()
    if journal is None:
        return []
    facts = journal.data
    found = (
        f"Found an interrupted restore of set {facts['set_id']} ({'+'.join(facts['parts'])}), started "
        f"{facts['started_at']} by process {facts['pid']}; its last step: {journal.step}."
    )
    report.step(found)
    logger.warning("RESTORE INTERRUPTED: %s", found)
    if journal.step == "finished":
        journal.remove()
        return [found, "It had finished swapping everything; only its journal was left, now removed."]
    database, uploads = _resumed_swaps(journal)
    decision = facts.get("decision") or decide(journal, database, uploads)
    _check_media_writable(facts, uploads, decision)
    journal.record("recovering", decision=decision)
    connections.close_all()  # a rename ends our own sessions on the shop database anyway
    try:
        lines = (
            _finish(journal, database, uploads) if decision == "finish" else _undo(journal, database, uploads)
        )
    except (OSError, BackupError) as exc:
        raise BackupError(
            f"recovering the interrupted restore of set {facts['set_id']} ({decision}) failed: {exc}. "
            f"The journal {journal_path()} is kept: fix the cause, then run "
            "`manage.py restore_backup --recover` again."
        ) from exc
    journal.remove()
    for line in lines:
        logger.warning("RESTORE RECOVERED: %s", line)
    if decision == "finish":
        status.record_restore(facts["set_id"], lines)
    return [found, *lines]


def _resumed_swaps(journal: RestoreJournal) -> tuple[DatabaseSwap | None, UploadsSwap | None]:
    """The swaps as the killed process left them, read from the databases and directories; None
    for a part that is not restored, or (uploads) whose swap had not started."""
    facts = journal.data
    database = uploads = None
    if "db" in facts["parts"]:
        database = DatabaseSwap.resumed(
            facts["live_db"], facts["staging_db"], facts["previous_db"], facts.get("had_live"), journal.record
        )
    if "uploads" in facts["parts"] and journal.reached("uploads-swap-started"):
        uploads = UploadsSwap.resumed(*_upload_paths(facts), facts["incoming"], journal.record)
    return database, uploads


def _upload_paths(facts: dict) -> tuple[Path, Path, Path]:
    return Path(facts["media_root"]), Path(facts["staging_dir"]), Path(facts["previous_dir"])


def decide(journal: RestoreJournal, database: DatabaseSwap | None, uploads: UploadsSwap | None) -> str:
    """ "finish" when restored data was already live, else "undo" (the rule in the module's doc)."""
    if not journal.reached("staged"):
        return "undo"
    if database is not None:
        return "finish" if database.step == "swapped" else "undo"
    return "finish" if uploads is not None and uploads.moved_in else "undo"


def _check_media_writable(facts: dict, uploads: UploadsSwap | None, decision: str) -> None:
    """Refuse before changing anything where the uploads cannot be moved (the backup worker
    mounts them read-only): a database finished or undone without its uploads would be worse."""
    if "uploads" not in facts["parts"]:
        return
    media_root, staging, _ = _upload_paths(facts)
    needs_moves = uploads is not None or (decision == "finish") or staging.exists()
    if needs_moves and media_root.is_dir() and not os.access(media_root, os.W_OK):
        raise BackupError(
            f"an interrupted restore of set {facts['set_id']} must be {decision}ed, which moves uploads "
            f"in {media_root}, and this process may not write there (read-only here?). Nothing was "
            "changed. Run `manage.py restore_backup --recover` where the uploads are writable (with "
            "Docker: in the backend service)."
        )


def _finish(journal: RestoreJournal, database: DatabaseSwap | None, uploads: UploadsSwap | None) -> list[str]:
    facts = journal.data
    lines = ["The restored data was already live, so the restore was finished:"]
    if database is not None:
        database.run()  # goes on from where it stopped; nothing to do once swapped
        database.allow_connections()
        lines += database.summary(facts["set_id"], facts["restored_rows"])
    if "uploads" in facts["parts"]:
        media_root, staging, previous = _upload_paths(facts)
        if not staging.is_dir():
            raise BackupError(
                f"the staged uploads {staging} are gone, so the uploads swap cannot be finished"
            )
        uploads = uploads or UploadsSwap(media_root, staging, previous, journal.record)
        uploads.run()
        staging.rmdir()  # empty now
        flush_to_disk(media_root)
        lines += uploads.summary(facts["set_id"], facts["restored_files"])
    return lines


def _undo(journal: RestoreJournal, database: DatabaseSwap | None, uploads: UploadsSwap | None) -> list[str]:
    facts = journal.data
    lines = ["No restored data was live yet, so the restore was undone:"]
    if "uploads" in facts["parts"]:
        media_root, staging, _ = _upload_paths(facts)
        if uploads is not None:
            uploads.undo()
            flush_to_disk(media_root)
        shutil.rmtree(staging, ignore_errors=True)
        lines.append(f"the uploads in {media_root} are as before the restore (the staged ones were removed)")
    if database is not None:
        database.undo()  # also drops the staging database
        database.allow_connections()
        live = facts["live_db"]
        lines.append(
            f"there is no database {live}, as before the restore (the staged one was dropped)"
            if database.had_live is False
            else f"the database {live} is as before the restore (the staged one was dropped)"
        )
    return lines

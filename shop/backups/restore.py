"""Restoring a set: verify everything first, stage beside the live data, then swap by renaming.

Order of work: checksums of every file and every blob the set names; the plan; then the
uploads are assembled in a staging directory inside MEDIA_ROOT (the archive extracted, the
blobs hard-linked or copied in: shop/backups/staging.py, shared with the deep verify) and the
dump is restored into a new database (row counts checked). Only when both are staged is
anything live touched: the database is swapped by renaming, then the top-level entries of
MEDIA_ROOT (shop/backups/swap.py). The previous database and uploads are kept for rollback.

The swap is all or nothing: if any part of it fails, every swap already made is undone
before the error is raised (the live database gets its previous one back, the restored copy
is dropped, the uploads are moved back), and the error says so; if the undo itself fails, the
error says exactly where everything is and which commands finish the job by hand.
"""

import contextlib
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import connections
from django.db.migrations.loader import MigrationLoader

from shop.backups import blobs, durable, media_bucket, staging, status
from shop.backups.archive import media_totals
from shop.backups.database import (
    DatabaseSwap,
    database_exists,
    database_size,
    derived_name,
    drop_database,
    drop_scratch_databases,
    live_database_name,
    maintenance_connection,
    major,
    server_version,
    tool_version,
)
from shop.backups.errors import BackupError
from shop.backups.inventory import latest_set_id, opened_set
from shop.backups.journal import RestoreJournal, journal_path
from shop.backups.lock import backup_lock
from shop.backups.manifest import DB_FILE, Manifest, new_set_id
from shop.backups.media_restore import BucketRestore, plan_bucket_restore
from shop.backups.progress import human_bytes
from shop.backups.recovery import recover_interrupted_restore
from shop.backups.swap import PREVIOUS_PREFIX, STAGING_PREFIX, UploadsSwap

logger = logging.getLogger("shop.backups")


@dataclass
class RestorePlan:
    set_id: str
    source: str
    directory: Path
    manifest: Manifest
    parts: list[str]
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)
    media: BucketRestore | None = None  # MEDIA_STORAGE=s3: the images go back into the bucket
    keys: object = None  # to read encrypted blobs with: identities, or an identity file (blobs.copy_out)


def restore(
    set_id: str | None,
    source: str | None,
    only: str | None,
    dry_run: bool,
    confirm,
    show,
    report,
    identity=None,
    confirmed: bool = False,
):
    """Restore a set (the newest if set_id is None). `confirm()` -> bool asks the user, `show(lines)`
    prints the plan, `identity` is the age identity file for an encrypted set. Returns the summary
    lines, or None for a dry run or a declined confirmation.

    `confirmed` (--yes: nobody is asked) lets the blobs' checksums be checked while the dump is
    restored into the staging database, instead of before: both only read the set or write
    beside the live data, and the swap waits for every checksum. Otherwise (a dry run, or a
    question to the user) every checksum is checked before the plan is shown."""
    with backup_lock("restore"):
        if not dry_run:
            recover_interrupted_restore(report)
        if not journal_path().exists():  # a dry run leaves an interrupted restore's staging alone
            for name in drop_scratch_databases():
                logger.warning("dropped database %s, left behind by an interrupted restore or verify", name)
        set_id = set_id or latest_set_id(source)
        with opened_set(set_id, source, report, identity) as (directory, manifest, where, keys):
            report.step(f"Checking every checksum of set {set_id} ({where}) before touching anything ...")
            # Working out the plan only reads (sizes, versions, migrations, free disk), so it runs
            # while the checksums are checked, and is used only once every one of them matched.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="plan") as pool:
                # A missing or wrong identity for encrypted blobs is refused here, before any change.
                keys = blobs.keys_for(manifest.blobs(), keys)
                planned = pool.submit(make_plan, set_id, where, directory, manifest, only, keys)
                overlap = confirmed and not dry_run
                staging.verify_files(directory, manifest, report, include_blobs=not overlap, keys=keys)
                plan = planned.result()
            show(plan_lines(plan))
            if plan.blockers:
                reasons = "; ".join(plan.blockers)
                raise BackupError(f"the restore cannot go ahead: {reasons}. Nothing was changed.")
            if dry_run or not confirm():
                return None
            summary = execute(plan, report, blobs_checked=not overlap)
            status.record_restore(set_id, summary)
            return summary


def make_plan(
    set_id: str, source: str, directory: Path, manifest: Manifest, only: str | None, keys=None
) -> RestorePlan:
    contents = manifest.contents
    if only and only not in contents:
        raise BackupError(f"set {set_id} holds {', '.join(contents)}, not {only}.")
    plan = RestorePlan(set_id, source, directory, manifest, [only] if only else contents, keys=keys)
    if journal_path().exists():  # only on a dry run: otherwise it was recovered under the lock already
        plan.warnings.append(
            f"an interrupted restore left {journal_path()}: the restore (or `restore_backup --recover`) "
            "first finishes or undoes it"
        )
    plan.lines.append(f"Backup set {set_id} from {source}, app version {manifest.app_version}")
    if "db" in plan.parts:
        _plan_database(plan)
    if "uploads" in plan.parts and media_bucket.active():
        _plan_bucket_uploads(plan)
    elif "uploads" in plan.parts:
        _plan_uploads(plan)
    return plan


def _plan_bucket_uploads(plan: RestorePlan) -> None:
    """The images go back into the media bucket (shop/backups/media_restore.py), not MEDIA_ROOT."""
    plan.media = plan_bucket_restore(plan.set_id, plan.manifest.uploads, plan.keys)
    plan.lines += plan.media.plan_lines()
    plan.warnings += plan.media.warnings()
    plan.parts = [part for part in plan.parts if part != "uploads"]


def _plan_database(plan: RestorePlan) -> None:
    info = plan.manifest.database
    live = live_database_name()
    with maintenance_connection() as conn:
        current_size = database_size(conn, live)
        live_server = server_version(conn)
    plan.lines.append(
        f"Database: {live} ({human_bytes(current_size or 0)}) is replaced by the dump "
        f"({human_bytes(plan.manifest.files[DB_FILE].size)}, "
        f"{sum(info.row_counts.values())} rows in {len(info.row_counts)} tables); "
        f"the current one is kept as {live}__pre_restore_<time>."
    )
    pg_restore = tool_version("pg_restore")
    plan.lines.append(
        f"Versions: set dumped by pg_dump {info.pg_dump_version} from PostgreSQL "
        f"{info.server_version}; here pg_restore {pg_restore}, server {live_server}."
    )
    if major(pg_restore) < major(info.pg_dump_version):
        plan.blockers.append(
            f"pg_restore {pg_restore} cannot read a dump made by pg_dump {info.pg_dump_version}: "
            "install the newer PostgreSQL client tools"
        )
    if major(live_server) < major(info.server_version):
        plan.warnings.append(
            f"the server ({live_server}) is older than the one the set came from ({info.server_version})"
        )
    plan.lines.extend(_migration_lines(info.migrations, plan.warnings))
    plan.lines.append(
        "Disk: PostgreSQL's free space cannot be measured from here; the restored database needs "
        f"about as much as the current one ({human_bytes(current_size or 0)}) until the old one is dropped."
    )


def _migration_lines(set_state: dict[str, list[str]], warnings: list[str]) -> list[str]:
    graph = MigrationLoader(None, ignore_no_migrations=True).graph
    in_code = set(graph.nodes)
    in_set = {(app, name) for app, names in set_state.items() for name in names}
    unknown, newer = sorted(in_set - in_code), sorted(in_code - in_set)
    lines = ["Migrations: the set and the code agree."] if not (unknown or newer) else []
    if newer:
        lines.append(
            f"Migrations: the code has {len(newer)} migration(s) the set lacks "
            f"({', '.join(f'{a}.{n}' for a, n in newer[:5])}): run `manage.py migrate` after the restore."
        )
    if unknown:
        warnings.append(
            f"the set has {len(unknown)} migration(s) this code does not know "
            f"({', '.join(f'{a}.{n}' for a, n in unknown[:5])}): deploy the app version that made the set"
        )
    return lines


def _plan_uploads(plan: RestorePlan) -> None:
    media_root = Path(settings.MEDIA_ROOT)
    count, size = media_totals(media_root) if media_root.is_dir() else (0, 0)
    incoming = plan.manifest.uploads
    plan.lines.append(
        f"Uploads: {media_root} ({count} files, {human_bytes(size)}) is replaced by "
        f"{incoming.file_count} files ({human_bytes(incoming.bytes)}); the current files are "
        f"kept in {media_root / PREVIOUS_PREFIX}<time>/."
    )
    # Staged inside MEDIA_ROOT (or where it will be created), so that is the disk that counts.
    existing = next(path for path in (media_root, *media_root.parents) if path.is_dir())
    free = shutil.disk_usage(existing).free
    needed = human_bytes(incoming.bytes)
    plan.lines.append(f"Disk: {human_bytes(free)} free in {media_root}, {needed} needed.")
    if free < incoming.bytes:
        plan.blockers.append(f"not enough free disk in {media_root} to stage the uploads")


def plan_lines(plan: RestorePlan) -> list[str]:
    lines = list(plan.lines)
    lines += [f"WARNING: {warning}" for warning in plan.warnings]
    lines += [f"CANNOT RESTORE: {blocker}" for blocker in plan.blockers]
    return lines


def _unused_stamp(media_root: Path, set_id: str) -> str:
    """The time stamp naming what this restore keeps for rollback; one-second resolution, so a
    restore right after another (in the same second) waits for a stamp neither one has used."""
    while True:
        stamp = new_set_id()
        with maintenance_connection() as conn:
            taken = database_exists(conn, derived_name(f"pre_restore_{stamp}"))
        if not taken and not _upload_paths(media_root, set_id, stamp)[1].exists():
            return stamp
        time.sleep(0.2)


def _upload_paths(media_root: Path, set_id: str, stamp: str) -> tuple[Path, Path]:
    """(staging, previous): hidden directories inside MEDIA_ROOT, whether or not it is a mount
    point (see shop/backups/swap.py), so the swap renames within one filesystem."""
    return media_root / f"{STAGING_PREFIX}{set_id}", media_root / f"{PREVIOUS_PREFIX}{stamp}"


def execute(plan: RestorePlan, report, blobs_checked: bool = True) -> list[str]:
    if plan.media and not plan.parts:  # only the images, into the media bucket
        return _restore_images_only(plan.media, report)
    media_root = Path(settings.MEDIA_ROOT)
    stamp = _unused_stamp(media_root, plan.set_id)
    staging_dir, previous_dir = _upload_paths(media_root, plan.set_id, stamp)
    staging_db = derived_name(f"restoring_{plan.set_id}")
    previous_db = derived_name(f"pre_restore_{stamp}")
    if "uploads" in plan.parts:
        media_root.mkdir(parents=True, exist_ok=True)  # a new server may not have it yet
        for leftover in media_root.glob(f"{STAGING_PREFIX}*"):  # from a killed restore; we hold the lock
            logger.warning("removed %s, left behind by an interrupted restore", leftover)
            shutil.rmtree(leftover, ignore_errors=True)
    journal = RestoreJournal.begin(
        set_id=plan.set_id,
        parts=plan.parts,
        live_db=live_database_name(),
        staging_db=staging_db,
        previous_db=previous_db,
        media_root=str(media_root),
        staging_dir=str(staging_dir),
        previous_dir=str(previous_dir),
        **restored_facts(plan),
    )
    try:
        # pg_restore works in the server while we extract: the two overlap instead of adding up.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg_restore") as pool:
            staged_db = pool.submit(_stage_database, plan, staging_db, report) if "db" in plan.parts else None
            if not blobs_checked:  # a corrupt blob stops the restore here, before any swap
                report.step(f"Checking the blobs of set {plan.set_id} while the dump is restored ...")
                staging.verify_blobs(plan.directory, plan.manifest, report, plan.keys)
            if "uploads" in plan.parts:
                _stage_uploads(plan, staging_dir, report)
            if plan.media:
                plan.media.stage(report)
            skipped_extensions = staged_db.result() if staged_db else []
    except BaseException as exc:
        discard_staging(staging_dir, staging_db)
        _discard_images(plan.media)
        journal.remove()
        if isinstance(exc, OSError):
            raise BackupError(f"staging the restore failed: {exc}. Nothing was changed.") from exc
        if isinstance(exc, BackupError) and "Nothing was changed" not in str(exc):
            raise type(exc)(f"{exc} Nothing was changed: the staged copies were removed.") from exc
        raise
    if plan.media:
        _switch_images(plan.media, report, staging_dir, staging_db, journal)
    swaps: list[DatabaseSwap | UploadsSwap] = []  # made so far, undone in reverse on any failure
    try:
        journal.record("staged")
        if "db" in plan.parts:
            live = live_database_name()
            report.step(f"Swapping databases: {live} -> {previous_db}, {staging_db} -> live")
            connections.close_all()  # ours would be terminated anyway; close them cleanly
            swaps.append(DatabaseSwap(live, staging_db, previous_db, journal.record))
            swaps[-1].run()
        if "uploads" in plan.parts:
            report.step(
                f"Swapping uploads: {media_root}/* -> {previous_dir.name}/, {staging_dir.name}/* -> live"
            )
            swaps.append(UploadsSwap(media_root, staging_dir, previous_dir, journal.record))
            swaps[-1].run()
    except BaseException as exc:
        with contextlib.suppress(OSError):  # a journal that cannot be written must not stop the undo
            journal.record("undoing", decision="undo")
        raise _undo(swaps, exc, staging_dir, staging_db, journal) from exc
    if "uploads" in plan.parts:
        staging_dir.rmdir()  # empty now
        durable.flush_to_disk(media_root)  # the renames too
    journal.record("finished")
    journal.remove()
    summary = []
    if "db" in plan.parts:
        summary += swaps[0].summary(plan.set_id, journal.data["restored_rows"])
        summary += skipped_extension_lines(skipped_extensions)
    if "uploads" in plan.parts:
        summary += swaps[-1].summary(plan.set_id, journal.data["restored_files"])
    if plan.media:
        summary += plan.media.summary()
    return summary


def _restore_images_only(media: BucketRestore, report) -> list[str]:
    try:
        media.stage(report)
        media.switch(report)
    except BaseException as exc:
        _discard_images(media)
        raise _images_failed(exc) from exc
    return media.summary()


def _switch_images(media: BucketRestore, report, staging_dir: Path, staging_db: str, journal) -> None:
    """Staged and checked images into the live prefix, before the database swap; on failure the
    database is not swapped."""
    try:
        media.switch(report)
    except BaseException as exc:
        discard_staging(staging_dir, staging_db)
        _discard_images(media)
        journal.remove()
        raise _images_failed(exc) from exc


def _images_failed(exc: BaseException) -> BackupError:
    return BackupError(
        f"restoring the images into the media bucket failed: {exc}. The database was not changed; "
        "images already copied into the bucket are unreferenced copies under their own names (harmless)."
    )


def _discard_images(media: BucketRestore | None) -> None:
    if media:
        try:
            media.discard()
        except Exception:  # the original error matters more; the staging prefix is not served
            logger.exception("removing the staged images from the media bucket failed")


def restored_facts(plan: RestorePlan) -> dict:
    """What the restore brings, in words, kept in the journal for a recovery's summary."""
    facts = {}
    if "db" in plan.parts:
        counts = plan.manifest.database.row_counts
        facts["restored_rows"] = f"{sum(counts.values())} rows in {len(counts)} tables"
    if "uploads" in plan.parts:
        uploads = plan.manifest.uploads
        facts["restored_files"] = f"{uploads.file_count} upload files ({human_bytes(uploads.bytes)})"
    return facts


def discard_staging(staging_dir: Path, staging_db: str) -> None:
    shutil.rmtree(staging_dir, ignore_errors=True)
    with maintenance_connection() as conn:
        drop_database(conn, staging_db)


def _undo(swaps: list, exc: BaseException, staging_dir: Path, staging_db: str, journal) -> BackupError:
    """Undo every swap made, newest first; the error to raise says what happened and where things are."""
    if not swaps:
        discard_staging(staging_dir, staging_db)
        journal.remove()
        return BackupError(f"the restore failed before swapping anything: {exc}. Nothing was changed.")
    what = "swapping the uploads" if isinstance(swaps[-1], UploadsSwap) else "swapping the databases"
    logger.error("RESTORE FAILED while %s (%s): undoing what was swapped", what, exc)
    undo_error = None
    for swap in reversed(swaps):
        try:
            swap.undo()
        except Exception as error:
            logger.exception("undoing the restore failed")
            undo_error = error
            break
    if undo_error is None:
        discard_staging(staging_dir, staging_db)  # the database is already dropped by its undo, if any
        journal.remove()
        parts = []
        for swap in swaps:
            if isinstance(swap, DatabaseSwap) and swap.had_live is False:
                parts.append(
                    f"there is no database {swap.live} again, as before (the restored one was dropped)"
                )
            elif isinstance(swap, DatabaseSwap):
                parts.append(
                    f"the database {swap.live} is the previous one again (the restored copy was dropped)"
                )
        if any(isinstance(swap, UploadsSwap) for swap in swaps):
            parts.append(
                f"the uploads in {settings.MEDIA_ROOT} are the previous ones again "
                "(the staged ones were removed)"
            )
        return BackupError(
            f"the restore failed while {what}: {exc}. Everything it had swapped was undone: "
            + "; ".join(parts)
            + ". The live data is as before the restore; fix the cause and run the restore again."
        )
    states, commands = [], []
    for swap in swaps:
        if isinstance(swap, DatabaseSwap):
            where, fix = swap.state(settings.BACKUP_MAINTENANCE_DATABASE)
        else:
            where, fix = swap.state()
        states.append(where)
        commands += fix
    how = (
        " Or put the previous data back by hand: stop the backend and workers, then run: "
        + "; ".join(commands)
        if commands
        else ""
    )
    return BackupError(
        f"the restore failed while {what}: {exc}. Undoing it failed too ({undo_error}), so the "
        f"live data is NOT as before. Now: {'; '.join(states)}. Once the cause is fixed, "
        f"`manage.py restore_backup --recover` finishes the undo (the journal {journal_path()} "
        f"records what was swapped).{how}"
    )


def _stage_uploads(plan: RestorePlan, staging_dir: Path, report) -> None:
    report.step(f"Staging the uploads in {staging_dir} ...")
    staging.stage_uploads(plan.directory, plan.manifest, staging_dir, report, plan.keys)


def _stage_database(plan: RestorePlan, staging_db: str, report) -> list[str]:
    """The dump restored into `staging_db`; returns the extensions left out (see restore_dump)."""
    report.step(f"Restoring the dump into the new database {staging_db} ...")
    skipped = staging.stage_database(plan.directory, plan.manifest, staging_db)
    for name in skipped:
        logger.warning("extension %s left out of the restore: only a superuser may create it", name)
    return skipped


def skipped_extension_lines(names: list[str]) -> list[str]:
    if not names:
        return []
    live = live_database_name()
    creates = " ".join(f"-c 'CREATE EXTENSION IF NOT EXISTS {name}'" for name in names)
    return [
        f"Left out: extension(s) {', '.join(names)} of the dump, which only a superuser may create "
        "(the shop does not need them). To add them back, as the PostgreSQL superuser:",
        f"  psql -d {live} {creates}",
    ]

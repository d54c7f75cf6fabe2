"""The swap is all or nothing: a failure after the first swap undoes every swap made, and says so.

Faults are injected by making one function raise (os.rename for an uploads entry, the
database rename): everything else is real (PostgreSQL, files).
"""

import errno
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from django.core.management.base import CommandError
from psycopg import sql

from shop.backups import database
from shop.backups.database import live_database_name
from shop.backups.manifest import new_set_id
from shop.backups.swap import PREVIOUS_PREFIX
from shop.catalog.models import Product
from tests.backups.conftest import (
    backup_now,
    derived_databases,
    hidden_entries,
    run_command,
    table_fingerprints,
    upload_fingerprints,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def backed_up_then_changed(shop_data, media_root):
    """A set with two top-level upload entries, then live data that differs from it."""
    (media_root / "banner.txt").write_text("banner from the backup")
    backup_now("--no-upload")
    Product.objects.filter(pk=shop_data[0].pk).update(stock=1)
    (media_root / "products" / "new.txt").write_text("added after the backup")
    (media_root / "banner.txt").write_text("banner changed after the backup")
    return table_fingerprints(), upload_fingerprints(media_root)


def fail_moving_staged_entries_in(monkeypatch, except_names=("banner.txt",)):
    """os.rename raises EIO when a staged entry (from a `.restoring-` directory) is moved into
    place, except for `except_names`: so the uploads swap fails halfway, after the database swap."""
    real_rename = os.rename

    def rename(source, target):
        source, target = Path(source), Path(target)
        if (
            ".restoring-" in str(source)
            and ".restoring-" not in str(target)
            and source.name not in except_names
        ):
            raise OSError(errno.EIO, "Input/output error (injected)", str(source))
        real_rename(source, target)

    monkeypatch.setattr(os, "rename", rename)


def fail_moving_in_and_back(monkeypatch):
    """Moving staged entries in fails (but banner.txt), and so does moving previous ones back:
    the swap fails halfway and its undo fails too."""
    real_rename = os.rename

    def rename(source, target):
        source, target = Path(source), Path(target)
        moving_in = ".restoring-" in str(source) and ".restoring-" not in str(target)
        moving_back = ".pre-restore-" in str(source) and ".pre-restore-" not in str(target)
        if (moving_in and source.name != "banner.txt") or moving_back:
            raise OSError(errno.EIO, "Input/output error (injected)", str(source))
        real_rename(source, target)

    monkeypatch.setattr(os, "rename", rename)


def test_uploads_swap_failing_after_the_database_swap_undoes_both(
    backed_up_then_changed, media_root, shop_data, monkeypatch
):
    rows, files = backed_up_then_changed
    fail_moving_staged_entries_in(monkeypatch)

    with pytest.raises(CommandError) as failure:
        run_command("restore_backup", "--latest", "--yes")
    monkeypatch.undo()

    message = str(failure.value)
    assert "while swapping the uploads" in message
    assert "Input/output error (injected)" in message
    assert "Everything it had swapped was undone" in message
    assert "the database" in message
    assert "is the previous one again" in message
    # The live database is the one from before the restore (rows changed after the backup), and
    # neither the restored copy nor a pre-restore copy is left.
    assert Product.objects.get(pk=shop_data[0].pk).stock == 1
    assert table_fingerprints() == rows
    assert derived_databases() == []
    assert upload_fingerprints(media_root) == files
    assert (media_root / "banner.txt").read_text() == "banner changed after the backup"
    assert hidden_entries(media_root) == []
    assert [p.name for p in media_root.parent.iterdir() if "uploads" in p.name] == ["uploads"]


def test_uploads_only_restore_failing_halfway_is_undone(backed_up_then_changed, media_root, monkeypatch):
    rows, files = backed_up_then_changed
    fail_moving_staged_entries_in(monkeypatch)

    with pytest.raises(CommandError, match="Everything it had swapped was undone: the uploads in"):
        run_command("restore_backup", "--latest", "--yes", "--only", "uploads")
    monkeypatch.undo()

    assert (table_fingerprints(), upload_fingerprints(media_root)) == (rows, files)
    assert hidden_entries(media_root) == []


def test_a_failure_between_the_two_database_renames_is_undone(
    backed_up_then_changed, media_root, monkeypatch
):
    rows, files = backed_up_then_changed
    live = live_database_name()
    real_rename = database._rename

    def rename(conn, old, new, *args, **kwargs):
        if old.startswith(f"{live}__restoring_") and new == live:  # the second rename of the swap
            raise psycopg.OperationalError("the server closed the connection (injected)")
        real_rename(conn, old, new, *args, **kwargs)

    monkeypatch.setattr(database, "_rename", rename)

    with pytest.raises(CommandError) as failure:
        run_command("restore_backup", "--latest", "--yes")
    monkeypatch.undo()

    message = str(failure.value)
    assert "while swapping the databases" in message
    assert "(injected)" in message
    assert f"Everything it had swapped was undone: the database {live} is the previous one again" in message
    assert table_fingerprints() == rows
    assert derived_databases() == []  # the previous database has its name back, the staged one is gone
    assert upload_fingerprints(media_root) == files  # the uploads swap never started
    assert hidden_entries(media_root) == []


def test_when_the_undo_fails_too_the_message_says_where_everything_is(
    backed_up_then_changed, media_root, monkeypatch
):
    """A second fault while undoing: the error must say what is where, and how to finish by hand."""
    rows, files = backed_up_then_changed
    fail_moving_in_and_back(monkeypatch)
    with pytest.raises(CommandError) as failure:
        run_command("restore_backup", "--latest", "--yes", "--only", "uploads")
    monkeypatch.undo()

    message = str(failure.value)
    assert "Undoing it failed too" in message
    assert "NOT as before" in message
    [previous] = [name for name in hidden_entries(media_root) if name.startswith(".pre-restore-")]
    assert f"previous entries are still in {previous}/" in message
    assert f"mv -- {previous}/* . && rmdir {previous}" in message
    # Following the printed commands gives the previous uploads back.
    commands = message.split("then run: ", 1)[1].rstrip(".").split("; ")
    subprocess.run(" && ".join(commands), shell=True, check=True)  # noqa: S602 - what an admin would run
    assert upload_fingerprints(media_root) == files
    assert table_fingerprints() == rows


def test_when_the_undo_fails_too_recover_finishes_the_undo_once_the_cause_is_gone(
    backed_up_then_changed, media_root, monkeypatch
):
    rows, files = backed_up_then_changed
    fail_moving_in_and_back(monkeypatch)
    with pytest.raises(CommandError, match="restore_backup --recover` finishes the undo"):
        run_command("restore_backup", "--latest", "--yes")
    monkeypatch.undo()  # the disk is healthy again

    output = "\n".join(run_command("restore_backup", "--recover"))

    assert "its last step: undoing" in output
    assert "restore was undone" in output
    assert (table_fingerprints(), upload_fingerprints(media_root)) == (rows, files)
    assert hidden_entries(media_root) == []
    assert derived_databases() == []
    assert run_command("restore_backup", "--recover") == ["No interrupted restore: nothing to do."]


def test_a_restore_never_takes_the_rollback_names_an_earlier_one_kept(backed_up_then_changed, media_root):
    """Names of what a restore keeps for rollback have one-second resolution: a restore started
    in the same second as the previous one (or as an earlier one's kept copies) waits for a free
    stamp instead of failing on `database ... already exists` halfway through the swap."""
    set_id = backup_now("--no-upload")
    now = datetime.now(UTC)
    taken = [new_set_id(now + timedelta(seconds=second)) for second in range(3)]
    kept_db = f"{live_database_name()}__pre_restore_{taken[0]}"
    with database.maintenance_connection() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(kept_db)))
    for stamp in taken[1:]:
        (media_root / f"{PREVIOUS_PREFIX}{stamp}").mkdir()

    run_command("restore_backup", set_id, "--yes")

    new_copies = [name for name in derived_databases() if "__pre_restore_" in name and name != kept_db]
    assert len(new_copies) == 1
    assert new_copies[0].rsplit("_", 1)[1] > taken[-1]
    assert (media_root / f"{PREVIOUS_PREFIX}{new_copies[0].rsplit('_', 1)[1]}").is_dir()


def test_a_swap_whose_rename_fails_leaves_the_live_database_accepting_connections():
    """When moving the live database aside fails (its rollback name taken), the live database
    must accept connections again, not the older copy that already had the name."""
    live, replacement, previous = "swaptest_live", "swaptest_restored", "swaptest_previous"
    names = (live, replacement, previous)
    with database.maintenance_connection() as conn:
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with pytest.raises(psycopg.errors.DuplicateDatabase):
            database.DatabaseSwap(live, replacement, previous).run()
        with database.maintenance_connection() as conn:
            allowed = dict(
                conn.execute(
                    "SELECT datname, datallowconn FROM pg_database WHERE datname = ANY(%s)", [list(names)]
                ).fetchall()
            )
        assert allowed == {live: True, replacement: True, previous: True}
    finally:
        with database.maintenance_connection() as conn:
            for name in names:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))

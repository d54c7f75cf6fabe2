"""A restore killed at each step of its journal is finished or undone by `restore_backup --recover`,
or by the next backup, and the live data is then entirely the old or entirely the restored one.

The restore runs in a real child process (`manage.py restore_backup`), which SIGKILLs itself
right after the step named by SHOP_RESTORE_FAILPOINT is durable in the journal.
"""

import signal
import subprocess
from subprocess import PIPE

import pytest
from django.core.management.base import CommandError
from django.db import connections

from shop.backups import local
from shop.backups.journal import FAILPOINT_VARIABLE, STEPS, journal_path
from shop.catalog.models import Product
from tests.backups.conftest import (
    backup_now,
    derived_databases,
    hidden_entries,
    manage,
    run_command,
    table_fingerprints,
    upload_fingerprints,
)

pytestmark = pytest.mark.django_db(transaction=True)

# The step a restore of the database and uploads is killed after, and what a recovery makes of it:
# undone (the live data as before the restore) or finished (the live data is the set's).
OUTCOME = {
    "staging": "undone",
    "staged": "undone",
    "db-swap-started": "undone",
    "db-live-moved-aside": "undone",  # between the two database renames: nothing restored was live
    "db-swapped": "finished",  # the restored database was live: the shop may have written to it
    "uploads-swap-started": "finished",
    "uploads-previous-created": "finished",
    "uploads-moved-out": "finished",
    "uploads-moved-in": "finished",
    "uploads-swapped": "finished",
    "finished": "finished",
}


@pytest.fixture
def old_and_new(shop_data, media_root):
    """(live data before the restore, data in the set): two top-level upload entries, and rows
    and files changed after the backup."""
    (media_root / "banner.txt").write_text("banner from the backup")
    backup_now("--no-upload")
    in_set = table_fingerprints(), upload_fingerprints(media_root)
    Product.objects.filter(pk=shop_data[0].pk).update(stock=1)
    (media_root / "products" / "new.txt").write_text("added after the backup")
    (media_root / "banner.txt").write_text("banner changed after the backup")
    return {"undone": (table_fingerprints(), upload_fingerprints(media_root)), "finished": in_set}


def kill_restore_after(step: str, *args: str) -> None:
    child = manage(
        "restore_backup",
        "--latest",
        "--yes",
        *args,
        env_overrides={FAILPOINT_VARIABLE: step},
        stdout=PIPE,
        stderr=PIPE,
    )
    _, err = child.communicate(timeout=180)
    assert child.returncode == -signal.SIGKILL, err.decode()
    assert journal_path().exists()
    connections.close_all()  # the child terminated our sessions when it renamed the database


def live_state(media_root):
    connections.close_all()
    return table_fingerprints(), upload_fingerprints(media_root)


def assert_clean(outcome: str, media_root) -> None:
    """No staging left anywhere; a finished restore keeps exactly one previous copy of each, for rollback."""
    assert not journal_path().exists()
    databases, hidden = derived_databases(), hidden_entries(media_root)
    if outcome == "undone":
        assert (databases, hidden) == ([], [])
    else:
        assert [name.split("__")[1][: len("pre_restore_")] for name in databases] == ["pre_restore_"]
        assert [name[: len(".pre-restore-")] for name in hidden] == [".pre-restore-"]
    assert "No interrupted restore: nothing to do." in run_command("restore_backup", "--recover")


def test_the_failpoints_are_the_journal_steps():
    assert set(OUTCOME) == set(STEPS) - {"undoing", "recovering"}


@pytest.mark.parametrize("step", list(OUTCOME))
def test_a_restore_killed_at_each_step_is_recovered(step, old_and_new, media_root):
    kill_restore_after(step)

    output = "\n".join(run_command("restore_backup", "--recover"))

    outcome = OUTCOME[step]
    assert f"its last step: {step}" in output
    if step != "finished":
        assert ("restore was finished" if outcome == "finished" else "restore was undone") in output
    assert live_state(media_root) == old_and_new[outcome]
    assert_clean(outcome, media_root)


@pytest.mark.parametrize("step", ["staged", "db-live-moved-aside", "uploads-moved-out", "uploads-moved-in"])
def test_the_next_backup_recovers_a_killed_restore_first(step, old_and_new, media_root):
    kill_restore_after(step)

    set_id = backup_now("--no-upload")

    outcome = OUTCOME[step]
    assert live_state(media_root) == old_and_new[outcome]
    assert_clean(outcome, media_root)
    assert set_id in local.local_set_ids()
    # The new set holds what is live now: restoring it changes nothing.
    run_command("restore_backup", set_id, "--yes")
    assert live_state(media_root) == old_and_new[outcome]


@pytest.mark.parametrize(
    ("step", "outcome"), [("uploads-moved-out", "undone"), ("uploads-moved-in", "finished")]
)
def test_an_uploads_only_restore_killed_halfway_is_recovered(step, outcome, old_and_new, media_root):
    rows_before = old_and_new["undone"][0]
    kill_restore_after(step, "--only", "uploads")

    run_command("restore_backup", "--recover")

    assert live_state(media_root) == (rows_before, old_and_new[outcome][1])
    assert not journal_path().exists()
    assert derived_databases() == []
    expected_hidden = [] if outcome == "undone" else [".pre-restore-"]
    assert [name[: len(".pre-restore-")] for name in hidden_entries(media_root)] == expected_hidden


def test_a_dry_run_leaves_an_interrupted_restore_alone_and_says_so(old_and_new, media_root):
    kill_restore_after("uploads-moved-out")

    output = "\n".join(run_command("restore_backup", "--latest", "--dry-run"))

    assert "an interrupted restore left" in output
    assert journal_path().exists()
    assert "restore was finished" in "\n".join(run_command("restore_backup", "--recover"))
    assert live_state(media_root) == old_and_new["finished"]


def test_the_next_restore_recovers_first_then_restores(old_and_new, media_root):
    kill_restore_after("db-live-moved-aside")

    output = "\n".join(run_command("restore_backup", "--latest", "--yes"))

    assert "its last step: db-live-moved-aside" in output
    assert live_state(media_root) == old_and_new["finished"]
    assert not journal_path().exists()
    assert len(derived_databases()) == 1  # the pre-restore copy of this restore only


@pytest.fixture
def read_only_media(media_root):
    """MEDIA_ROOT bind-mounted read-only onto itself, as the backup worker mounts the uploads
    (needs root; skipped otherwise). Yields a function that makes it writable again."""
    steps = [
        ["mount", "--bind", str(media_root), str(media_root)],
        ["mount", "-o", "remount,bind,ro", str(media_root)],
    ]
    for step in steps:
        result = subprocess.run(step, capture_output=True, check=False)
        if result.returncode != 0:
            subprocess.run(["umount", "-l", str(media_root)], capture_output=True, check=False)
            pytest.skip(f"cannot mount here (needs root): {result.stderr.decode().strip()}")
    mounted = [True]

    def make_writable():
        subprocess.run(["umount", str(media_root)], check=True)
        mounted.clear()

    yield make_writable
    if mounted:
        subprocess.run(["umount", "-l", str(media_root)], check=True)


def test_a_backup_where_the_uploads_are_read_only_refuses_to_recover_and_changes_nothing(
    old_and_new, media_root, request
):
    kill_restore_after("uploads-moved-out")  # the restored database is live: it must be finished
    make_writable = request.getfixturevalue("read_only_media")
    rows_now = live_state(media_root)[0]

    with pytest.raises(CommandError, match=r"may not write there .* Nothing was changed"):
        run_command("backup_now", "--no-upload")

    assert journal_path().exists()
    assert len(local.local_set_ids()) == 1  # only the set restored from: the backup made none
    assert live_state(media_root)[0] == rows_now
    make_writable()
    assert "restore was finished" in "\n".join(run_command("restore_backup", "--recover"))
    assert live_state(media_root) == old_and_new["finished"]
    assert_clean("finished", media_root)

"""The backup commands honour --verbosity: 0 quiet, 1 the steps, 2 the details."""

import pytest

from tests.backups.conftest import run_command

pytestmark = pytest.mark.django_db(transaction=True)


def test_backup_now_prints_only_the_set_id_at_verbosity_0(shop_data):
    lines = run_command("backup_now", "--no-upload", "--verbosity", "0")
    assert len(lines) == 1
    assert lines[0].endswith("Z")
    assert run_command("verify_backup", lines[0], "--verbosity", "0") == []


def test_verbosity_1_shows_the_steps_and_2_the_details(shop_data):
    normal = run_command("backup_now", "--no-upload")
    assert any(line.startswith("Backing up uploads from") for line in normal)
    assert not any(": blob blobs/" in line for line in normal)

    detailed = run_command("backup_now", "--no-upload", "--verbosity", "2")
    assert any(line.startswith("Backing up uploads from") for line in detailed)
    assert not any(": blob blobs/" in line for line in detailed)  # nothing new to store
    restored = run_command("restore_backup", detailed[-1], "--yes", "--only", "uploads", "--verbosity", "2")
    assert any("hard-linked from the blob store" in line for line in restored)


def test_a_new_blob_is_named_at_verbosity_2(shop_data):
    lines = run_command("backup_now", "--no-upload", "--verbosity", "2")
    assert sum(": blob blobs/" in line for line in lines) >= 10  # every image and thumbnail, first time
    quiet_restore = run_command("restore_backup", lines[-1], "--yes", "--verbosity", "0")
    assert quiet_restore == []

"""Restored uploads are on disk, not only in the page cache, before and after they go live.

Deterministic: a spy on flush_to_disk (which still runs the real syncfs) records which
directory is flushed and what the staging and live directories hold at that moment. Reading
the machine-wide dirty-page counter instead was flaky on a machine others write to as well.
"""

import os
from pathlib import Path

import pytest

from shop.backups import durable
from tests.backups.conftest import backup_now, run_command, upload_fingerprints

pytestmark = pytest.mark.django_db(transaction=True)


def test_restore_flushes_the_staged_uploads_before_the_swap_and_the_live_ones_after(
    shop_data, media_root, monkeypatch
):
    set_id = backup_now("--no-upload")
    backed_up = upload_fingerprints(media_root)
    (media_root / "products" / "after-the-backup.txt").write_text("live, not in the set")
    live_before = upload_fingerprints(media_root)
    flushed = []

    def spy(directory):
        directory = Path(directory)
        flushed.append((directory, upload_fingerprints(directory), upload_fingerprints(media_root)))
        real_flush(directory)

    real_flush = durable.flush_to_disk
    monkeypatch.setattr(durable, "flush_to_disk", spy)
    run_command("restore_backup", "--latest", "--yes", "--only", "uploads")

    staging = media_root / f".restoring-{set_id}"
    assert [directory for directory, _, _ in flushed] == [staging, media_root]
    # Before the swap: every staged file is flushed while the live uploads are still the old ones.
    _, staged, live = flushed[0]
    assert staged == backed_up
    assert live == live_before
    # After the swap (the renames are flushed too): the restored files are the live ones.
    _, _, live = flushed[1]
    assert live == backed_up
    assert upload_fingerprints(media_root) == backed_up


def test_flush_to_disk_syncs_the_file_system_of_the_directory(tmp_path):
    (tmp_path / "image.png").write_bytes(os.urandom(1024))
    durable.flush_to_disk(tmp_path)  # syncfs on a descriptor of this directory: no error
    with pytest.raises(FileNotFoundError):
        durable.flush_to_disk(tmp_path / "missing")

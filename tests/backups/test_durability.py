"""Restored uploads are on disk, not only in the page cache, before they go live."""

import os
import re
from pathlib import Path

import pytest

from shop.backups.archive import flush_to_disk


def dirty_kib() -> int:
    return int(re.search(r"^Dirty:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M).group(1))


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="needs Linux's /proc/meminfo")
def test_flush_to_disk_writes_back_what_was_written_without_fsync(tmp_path):
    size = 64 * 1024 * 1024
    with open(tmp_path / "image.png", "wb") as unsynced:
        unsynced.write(os.urandom(size))
    dirty_before = dirty_kib()
    assert dirty_before * 1024 >= size // 2, "the file should still be in the page cache, unwritten"

    flush_to_disk(tmp_path)

    assert dirty_kib() * 1024 < dirty_before * 1024 - size // 2

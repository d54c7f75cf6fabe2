"""Making writes durable: fsync of a file or a directory, syncfs of a whole filesystem.

Every durability step of the backups goes through here, so the rule is in one place: data
first (fsync or syncfs), then the rename that makes it visible, then the directory (or
another syncfs) so the rename itself survives a crash.
"""

import ctypes
import os
from pathlib import Path

SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>


def fsync_file(path: Path) -> None:
    with open(path, "rb") as written:
        os.fsync(written.fileno())


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def flush_to_disk(directory: Path) -> None:
    """Make everything written on the file system that holds `directory` durable (syncfs).

    Many small files are not fsynced one by one (that costs several times more); one syncfs
    gives the same guarantee for all of them at once. Falls back to a system-wide sync where
    syncfs is missing (not Linux).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    syncfs = getattr(libc, "syncfs", None)
    fd = os.open(directory, os.O_RDONLY)
    try:
        if syncfs is None or syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


_sync_file_range = None


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask Linux to start writing a range of a file to disk, without waiting (a no-op elsewhere)."""
    global _sync_file_range
    if _sync_file_range is None:
        try:
            function = ctypes.CDLL(None, use_errno=True).sync_file_range
            function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
            _sync_file_range = function
        except (AttributeError, OSError):
            _sync_file_range = False
    if _sync_file_range:
        _sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)  # a hint: its errors do not matter

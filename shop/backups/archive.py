"""The uploads archive: a plain tar of the uploads not kept as blobs, streamed both ways.

Format-1 sets hold every upload in it; format-2 sets only the directories and the files the
catalog does not write under immutable names (see shop/backups/backup.py), usually few.

No compression: product images are JPEG/PNG/WebP and hardly compress, so gzip would cost
CPU time for almost nothing. Names starting with a dot are left out: they are temporary
files (`.incoming-*` of the image storage, `.readyz-*` of the probe) or our own restore
directories.
"""

import contextlib
import grp
import hashlib
import logging
import os
import pwd
import stat
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from shop.backups.errors import CorruptSet, UnsafeArchive
from shop.backups.files import create_private_file
from shop.backups.manifest import CHUNK_SIZE, STORED_IN_ARCHIVE, HashingWriter, UploadFile

logger = logging.getLogger("shop.backups")


@dataclass
class MediaEntry:
    """A directory or regular file under MEDIA_ROOT, as found by the walk."""

    path: Path
    name: str  # relative to MEDIA_ROOT, with forward slashes
    mode: int
    size: int
    mtime_ns: int

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


@dataclass
class ArchiveResult:
    sha256: str
    size: int
    files: list[UploadFile]

    @property
    def file_count(self) -> int:
        return len(self.files)

    @property
    def file_bytes(self) -> int:
        return sum(entry.size for entry in self.files)


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def media_totals(media_root: Path) -> tuple[int, int]:
    """(file count, bytes) of the regular files a backup of media_root would hold."""
    count = size = 0
    for entry in media_entries(media_root):
        if not entry.is_dir:
            count += 1
            size += entry.size
    return count, size


class _HashingReader:
    """Hashes what tarfile reads from a file on its way into the archive."""

    def __init__(self, raw):
        self.raw, self.digest = raw, hashlib.sha256()

    def read(self, size=-1):
        data = self.raw.read(size)
        self.digest.update(data)
        return data


class _OwnerNames:
    """TarInfo of a directory or regular file from its stat, as TarFile.gettarinfo makes it,
    but with each owner's user and group name looked up once per archive instead of once per
    member (the lookups were most of the archive's time for a store's few hundred directories).
    Always a plain member: never a hard link to an earlier one, which a restore would refuse."""

    def __init__(self):
        self._users: dict[int, str] = {}
        self._groups: dict[int, str] = {}

    def tarinfo(self, name: str, info: os.stat_result) -> tarfile.TarInfo:
        member = tarfile.TarInfo(name)
        member.type = tarfile.DIRTYPE if stat.S_ISDIR(info.st_mode) else tarfile.REGTYPE
        member.mode = info.st_mode
        member.uid, member.gid = info.st_uid, info.st_gid
        member.size = info.st_size if member.type == tarfile.REGTYPE else 0
        member.mtime = info.st_mtime
        member.uname = self._name(self._users, info.st_uid, lambda uid: pwd.getpwuid(uid).pw_name)
        member.gname = self._name(self._groups, info.st_gid, lambda gid: grp.getgrgid(gid).gr_name)
        return member

    @staticmethod
    def _name(cache: dict[int, str], key: int, lookup) -> str:
        if key not in cache:
            try:
                cache[key] = lookup(key)
            except KeyError:
                cache[key] = ""  # no such user or group here: numeric ids only, as tarfile does
        return cache[key]


def write_uploads_archive(entries, out_path: Path, report) -> ArchiveResult:
    """Archive these MediaEntry items (directories and files); files deleted since the walk are
    skipped. Every archived file is listed with its SHA-256, computed as it is archived."""
    files = []
    with (
        create_private_file(out_path) as raw,
        HashingWriter(raw) as writer,
        report.track("uploads archive", None) as advance,
    ):
        # Mode "w" on a write-only stream: it never seeks, and unlike "w|" it writes our 1 MB chunks
        # straight through instead of re-slicing them into 10 KB records (several times slower).
        with tarfile.open(fileobj=writer, mode="w", format=tarfile.PAX_FORMAT, copybufsize=CHUNK_SIZE) as tar:
            owners = _OwnerNames()
            for entry in entries:
                if entry.is_dir:
                    with contextlib.suppress(FileNotFoundError):  # deleted since the walk
                        tar.addfile(owners.tarinfo(entry.name, os.lstat(entry.path)))
                    continue
                try:
                    with open(entry.path, "rb") as source:
                        info_stat = os.fstat(source.fileno())
                        info = owners.tarinfo(entry.name, info_stat)
                        mtime_ns = info_stat.st_mtime_ns
                        hashing = _HashingReader(source)
                        tar.addfile(info, hashing)
                except FileNotFoundError:
                    continue  # deleted since the walk
                files.append(
                    UploadFile(
                        entry.name,
                        hashing.digest.hexdigest(),
                        info.size,
                        info.mode,
                        mtime_ns,
                        STORED_IN_ARCHIVE,
                    )
                )
                advance(info.size)
        raw.flush()
        os.fsync(raw.fileno())
    return ArchiveResult(writer.hexdigest(), writer.size, files)


def media_entries(media_root: Path):
    """MediaEntry of the directories and regular files under media_root, parents first, in a
    stable order. Symlinks and special files are skipped with a warning: a restore refuses
    them, so backing one up would make the whole set unrestorable."""
    # Plain strings and os.scandir rather than os.walk and Path.relative_to: this runs over
    # every upload file in every backup, and pathlib's per-entry cost was most of the walk.
    yield from _entries_below(str(media_root), "")


def _entries_below(directory: str, prefix: str):
    try:
        with os.scandir(directory) as listing:
            names = sorted(entry.name for entry in listing if not _is_hidden(entry.name))
    except (FileNotFoundError, NotADirectoryError):
        return  # removed since its parent was listed
    subdirectories = []
    for name in names:
        path = f"{directory}/{name}"
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue  # deleted since the directory was listed
        if stat.S_ISDIR(info.st_mode):
            subdirectories.append(name)
        elif not stat.S_ISREG(info.st_mode):
            logger.warning("not backing up %s: not a plain file or directory", path)
            continue
        yield MediaEntry(Path(path), f"{prefix}{name}", info.st_mode, info.st_size, info.st_mtime_ns)
    for name in subdirectories:
        yield from _entries_below(f"{directory}/{name}", f"{prefix}{name}/")


def check_member(member: tarfile.TarInfo) -> PurePosixPath:
    """The member's relative path, or UnsafeArchive if extracting it could escape or surprise."""
    name = PurePosixPath(member.name)
    if name.is_absolute() or member.name.startswith(("/", "\\")):
        raise UnsafeArchive(f"the uploads archive holds an absolute path: {member.name!r}")
    if ".." in name.parts:
        raise UnsafeArchive(f"the uploads archive holds a path that leaves its directory: {member.name!r}")
    if member.issparse():
        raise UnsafeArchive(
            f"the uploads archive holds a sparse member, which we never write: {member.name!r}"
        )
    if not (member.isreg() or member.isdir()):
        raise UnsafeArchive(
            f"the uploads archive holds {member.name!r}, which is a link or device, not a plain file"
        )
    if not name.parts or name == PurePosixPath("."):
        raise UnsafeArchive(f"the uploads archive holds an empty name: {member.name!r}")
    return name


def _copy_range(source_fd: int, offset: int, size: int, target_fd: int, name: str) -> None:
    end = offset + size
    while offset < end:
        sent = os.sendfile(target_fd, source_fd, offset, min(end - offset, 1 << 30))
        if sent == 0:
            raise CorruptSet(f"the uploads archive ends inside {name!r}: it is truncated.")
        offset += sent


EXTRACT_THREADS = 2  # sendfile releases the GIL: two files are copied at a time


def extract_uploads_archive(archive_path: Path, destination: Path, report) -> tuple[int, int]:
    """Extract into an existing, empty destination; (file count, bytes). Refuses unsafe members.

    Every header is checked before anything is written, so an unsafe member refuses the archive
    with nothing extracted. Files are written by us, not by tarfile, so nothing but plain files
    and directories with ordinary permissions can come out of it, whatever the archive says.
    The bytes are copied by the kernel (sendfile from the member's offset, which works across
    filesystems and leaves the archive's file position alone), two files at a time.
    """
    root = destination.resolve()
    try:
        # "r:" rather than the stream mode "r|": members are read directly, not in 10 KB records.
        with (
            tarfile.open(archive_path, mode="r:") as tar,
            report.track("extracting uploads", None) as advance,
        ):
            return _extract_members(tar, root, advance)
    except tarfile.TarError as exc:
        raise CorruptSet(f"the uploads archive is damaged: {exc}") from exc
    except (FileExistsError, IsADirectoryError, NotADirectoryError) as exc:
        raise UnsafeArchive(
            f"the uploads archive holds {exc.filename} twice, or as both a file and a directory"
        ) from exc


def _extract_members(tar: tarfile.TarFile, root: Path, advance) -> tuple[int, int]:
    directories, files = [], []
    for member in tar:
        target = root.joinpath(*check_member(member).parts)
        (directories if member.isdir() else files).append((member, target))
    for _, target in directories:
        target.mkdir(mode=0o755, parents=True, exist_ok=True)
    source_fd = tar.fileobj.fileno()

    def extract(item: tuple[tarfile.TarInfo, Path]) -> int:
        member, target = item
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        with open(target, "xb") as out:
            _copy_range(source_fd, member.offset_data, member.size, out.fileno(), member.name)
        os.chmod(target, 0o644)
        os.utime(target, (member.mtime, member.mtime))
        return member.size

    count = file_bytes = 0
    with ThreadPoolExecutor(EXTRACT_THREADS, thread_name_prefix="extract") as pool:
        try:
            for size in pool.map(extract, files):
                count += 1
                file_bytes += size
                advance(size)
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return count, file_bytes

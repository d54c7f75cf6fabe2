"""The uploads archive: a plain tar of MEDIA_ROOT, streamed in both directions.

No compression: product images are JPEG/PNG/WebP and hardly compress, so gzip would cost
CPU time for almost nothing. Names starting with a dot are left out: they are temporary
files (`.incoming-*` of the image storage, `.readyz-*` of the probe) or our own restore
directories.
"""

import os
import shutil
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from shop.backups.errors import UnsafeArchive
from shop.backups.manifest import CHUNK_SIZE, HashingWriter


@dataclass
class ArchiveResult:
    sha256: str
    size: int
    file_count: int
    file_bytes: int


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def media_totals(media_root: Path) -> tuple[int, int]:
    """(file count, bytes) of the regular files an archive of media_root would hold."""
    count = size = 0
    for directory, dirnames, filenames in os.walk(media_root):
        dirnames[:] = [name for name in dirnames if not _is_hidden(name)]
        for name in filenames:
            path = os.path.join(directory, name)
            if not _is_hidden(name) and os.path.isfile(path) and not os.path.islink(path):
                count += 1
                size += os.path.getsize(path)
    return count, size


def write_uploads_archive(media_root: Path, out_path: Path, report) -> ArchiveResult:
    count = file_bytes = 0
    with open(out_path, "wb") as raw, report.track("uploads archive", None) as advance:
        writer = HashingWriter(raw)
        with tarfile.open(
            fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT, copybufsize=CHUNK_SIZE
        ) as tar:
            for path in _archivable_paths(media_root):
                try:
                    info = tar.gettarinfo(str(path), arcname=path.relative_to(media_root).as_posix())
                    if info.isreg():
                        with open(path, "rb") as source:
                            tar.addfile(info, source)
                        count += 1
                        file_bytes += info.size
                        advance(info.size)
                    else:
                        tar.addfile(info)
                except FileNotFoundError:
                    continue  # deleted since the walk (an image removed after its row was deleted)
        raw.flush()
        os.fsync(raw.fileno())
    return ArchiveResult(writer.sha256.hexdigest(), writer.size, count, file_bytes)


def _archivable_paths(media_root: Path):
    """Directories and regular files under media_root, parents first, in a stable order."""
    for directory, dirnames, filenames in os.walk(media_root):
        dirnames[:] = sorted(name for name in dirnames if not _is_hidden(name))
        base = Path(directory)
        for name in dirnames:
            yield base / name
        for name in sorted(filenames):
            path = base / name
            if not _is_hidden(name) and stat.S_ISREG(path.lstat().st_mode):
                yield path


def check_member(member: tarfile.TarInfo) -> PurePosixPath:
    """The member's relative path, or UnsafeArchive if extracting it could escape or surprise."""
    name = PurePosixPath(member.name)
    if name.is_absolute() or member.name.startswith(("/", "\\")):
        raise UnsafeArchive(f"the uploads archive holds an absolute path: {member.name!r}")
    if ".." in name.parts:
        raise UnsafeArchive(f"the uploads archive holds a path that leaves its directory: {member.name!r}")
    if not (member.isreg() or member.isdir()):
        raise UnsafeArchive(
            f"the uploads archive holds {member.name!r}, which is a link or device, not a plain file"
        )
    if not name.parts or name == PurePosixPath("."):
        raise UnsafeArchive(f"the uploads archive holds an empty name: {member.name!r}")
    return name


def extract_uploads_archive(archive_path: Path, destination: Path, report) -> tuple[int, int]:
    """Extract into an existing, empty destination; (file count, bytes). Refuses unsafe members.

    Files are written by us, not by tarfile, so nothing but plain files and directories with
    ordinary permissions can come out of it, whatever the archive says.
    """
    count = file_bytes = 0
    root = destination.resolve()
    with tarfile.open(archive_path, mode="r|") as tar, report.track("extracting uploads", None) as advance:
        for member in tar:
            relative = check_member(member)
            target = root.joinpath(*relative.parts)
            if member.isdir():
                target.mkdir(mode=0o755, parents=True, exist_ok=True)
                continue
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            with tar.extractfile(member) as source, open(target, "xb") as out:
                shutil.copyfileobj(source, out, CHUNK_SIZE)
            os.chmod(target, 0o644)
            os.utime(target, (member.mtime, member.mtime))
            count += 1
            file_bytes += member.size
            advance(member.size)
    return count, file_bytes

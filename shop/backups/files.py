"""Files and directories of the backup volume, private whoever creates them.

A backup set holds every customer's data. Backups run as root (`make init`, CI) or as the
app user (the containers), under whatever umask, so modes are set explicitly after creating:
directories 0750, files 0640 (the owner writes, its group, e.g. an operators' group, reads).
"""

import os
from pathlib import Path

PRIVATE_DIR_MODE = 0o750
PRIVATE_FILE_MODE = 0o640


def make_private_dir(path: Path) -> Path:
    """mkdir with mode 0750 whatever the umask (a set's directory, a fetch or scratch directory)."""
    path.mkdir(mode=PRIVATE_DIR_MODE)
    os.chmod(path, PRIVATE_DIR_MODE)
    return path


def create_private_file(path: Path, mode: str = "wb"):
    """Open a new file for writing with mode 0640 whatever the umask and the user running us."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)  # the umask applies to os.open's mode, not to fchmod
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise

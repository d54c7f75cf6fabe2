"""Running pgBackRest for the shop: as the postgres user when we are root (the repository, the
lock and the spool directories are that user's, as archive-push runs as PostgreSQL's user)."""

import json
import os
import pwd
import shutil
import subprocess

from django.conf import settings

from shop.backups.errors import BackupError
from shop.backups.pitr.config import STANZA


class PitrError(BackupError):
    """Point-in-time recovery cannot do what was asked; the message says why and what to do."""


def require_enabled() -> None:
    if not settings.PITR_ENABLED:
        raise PitrError(
            "point-in-time recovery is off (PITR_ENABLED=false): there is no WAL archive to restore "
            "from. Restore a backup set instead (`restore_backup --latest`)."
        )
    if not shutil.which("pgbackrest"):
        raise PitrError("pgbackrest is not installed (Debian/Ubuntu: `apt-get install pgbackrest`).")


def as_user(command: list[str]) -> list[str]:
    """setpriv to PITR_OS_USER when root, so every file pgBackRest writes is that user's."""
    if os.geteuid() != 0 or not settings.PITR_OS_USER:
        return command
    pwd.getpwnam(settings.PITR_OS_USER)  # KeyError early, with the name
    user = settings.PITR_OS_USER
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *command]


def environment() -> dict[str, str]:
    # libpq (inside pgBackRest) reads the superuser's password from PGPASSWORD.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PGBACKREST_")}
    if settings.PITR_PG_PASSWORD:
        env["PGPASSWORD"] = settings.PITR_PG_PASSWORD
    return env


def command(*args: str) -> list[str]:
    return as_user(["pgbackrest", f"--config={settings.PITR_PGBACKREST_CONFIG}", f"--stanza={STANZA}", *args])


def run(*args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    """One pgBackRest command; PitrError with its own message when it fails."""
    full = command(*args)
    try:
        result = subprocess.run(
            full, env=environment(), capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise PitrError(f"pgbackrest {' '.join(args)} did not finish within {timeout} s") from None
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip() or f"exit status {result.returncode}"
        raise PitrError(f"pgbackrest {' '.join(args)} failed: {message}")
    return result


def info(repo: int | None = None) -> dict:
    """The stanza's `pgbackrest info` (JSON): each repository's status, backups and WAL range
    (only repository `repo` when given: a dead S3 is then not even asked)."""
    args = [f"--repo={repo}"] if repo else []
    result = run(*args, "--output=json", "info", timeout=120)
    stanzas = json.loads(result.stdout)
    if not stanzas:
        raise PitrError(f"the pgBackRest repository has no stanza {STANZA!r}: has PITR ever started?")
    return stanzas[0]

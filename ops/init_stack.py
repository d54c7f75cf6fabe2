"""`make init`: create `.env` with fresh secrets if it is missing, and the data directories.

Standard library only, so it runs before any virtualenv exists (`python3 ops/init_stack.py`).
The directories are those of the documented volume layout (../shared/GUIDE.md): the compose
files bind the volumes to them, and the Docker-less runner uses them directly.
"""

import os
import secrets
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Placeholders in .env.example that get a freshly generated value in a new .env.
GENERATED_SECRETS = ("DJANGO_SECRET_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "MINIO_ROOT_PASSWORD")

# Volume name -> directory under DATA_PATH, and the mode it is created with. PostgreSQL
# refuses a data directory that others can read.
DATA_DIRECTORIES = {
    "postgres_data": ("postgres", 0o700),
    "uploads": ("uploads", 0o755),
    "redis_data": ("redis", 0o755),
    "logs": ("logs", 0o755),
    "nginx_logs": ("nginx-logs", 0o755),
}


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (comments and blank lines skipped, quotes removed)."""
    values = {}
    for raw_line in path.read_text().splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def new_secret() -> str:
    # URL-safe, so it can be put into DATABASE_URL/REDIS_URL without quoting.
    return secrets.token_urlsafe(32)


def host_values(root: Path) -> dict[str, str]:
    """Values of a new .env that depend on this machine rather than on the example."""
    example = read_env_file(root / ".env.example")
    values = {
        # Docker's local volume driver binds only absolute paths.
        "DATA_PATH": str(resolve(example.get("DATA_PATH", "./data"), root)),
        "BACKUP_PATH": str(resolve(example.get("BACKUP_PATH", "./backups"), root)),
    }
    if os.geteuid() != 0:
        # The image's user is then the owner of the data directories (see the Dockerfile).
        values.update(APP_UID=str(os.getuid()), APP_GID=str(os.getgid()))
    return values


def render_env_file(example: str, replacements: dict[str, str]) -> str:
    """The text of .env.example with new secrets and the given values filled in."""
    lines = []
    for line in example.splitlines():
        key = line.split("=", 1)[0]
        if key in GENERATED_SECRETS:
            line = f"{key}={new_secret()}"
        elif key in replacements:
            line = f"{key}={replacements[key]}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def ensure_env_file(root: Path = PROJECT_ROOT) -> bool:
    """Create root/.env from .env.example with fresh secrets; False when it already exists."""
    env_file = root / ".env"
    if env_file.exists():
        return False
    text = render_env_file((root / ".env.example").read_text(), host_values(root))
    # Created with mode 600 from the start: it holds the secrets.
    fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return True


def setting(name: str, default: str, root: Path = PROJECT_ROOT) -> str:
    """A value from the environment, else from root/.env, else the default (like compose)."""
    if os.environ.get(name):
        return os.environ[name]
    env_file = root / ".env"
    if env_file.is_file():
        value = read_env_file(env_file).get(name)
        if value:
            return value
    return default


def resolve(path: str, root: Path = PROJECT_ROOT) -> Path:
    """Relative paths are relative to the project root, as in the compose files."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else (root / candidate).resolve()


def data_path(root: Path = PROJECT_ROOT) -> Path:
    return resolve(setting("DATA_PATH", "./data", root), root)


def backup_path(root: Path = PROJECT_ROOT) -> Path:
    return resolve(setting("BACKUP_PATH", "./backups", root), root)


def create_data_dirs(data: Path, backups: Path, app_owner: tuple[int, int] | None = None) -> list[Path]:
    """Create the data and backup directories that are missing; return those created.

    app_owner: (uid, gid) to give the directories the shop's processes write to, for root
    preparing them for the image's user.
    """
    created = []
    wanted = [(data / name, mode) for name, mode in DATA_DIRECTORIES.values()] + [(backups, 0o750)]
    # Written by the shop's containers; postgres/, redis/ and nginx-logs/ are looked after by
    # their own images.
    app_writable = {data / "uploads", data / "logs", backups}
    for path, mode in wanted:
        if not path.exists():
            path.mkdir(parents=True)
            created.append(path)
            if app_owner and path in app_writable:
                os.chown(path, *app_owner)
        if path.stat().st_uid == os.geteuid():
            # Only for our own directories: PostgreSQL in Docker or the runner may own postgres/.
            path.chmod(mode)
    return created


def docker_app_owner(root: Path = PROJECT_ROOT) -> tuple[int, int] | None:
    """As root, the image's user (APP_UID/APP_GID) must own what it writes on the host."""
    if os.geteuid() != 0:
        return None
    return int(setting("APP_UID", "10001", root)), int(setting("APP_GID", "10001", root))


def main() -> int:
    if ensure_env_file():
        print(f"Created {PROJECT_ROOT / '.env'} with new secrets (mode 600). Review it before going live.")
    else:
        print(f"{PROJECT_ROOT / '.env'} exists; left as it is.")
    for path in create_data_dirs(data_path(), backup_path(), docker_app_owner()):
        print(f"Created {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make init`: create `.env` with fresh secrets if it is missing, and the data directories.

Standard library only, so it runs before any virtualenv exists (`python3 ops/init_stack.py`).
The directories are those of the documented volume layout (../shared/GUIDE.md): the compose
files bind the volumes to them, and the Docker-less runner uses them directly.
"""

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Placeholders in .env.example that get a freshly generated value in a new .env.
GENERATED_SECRETS = (
    "DJANGO_SECRET_KEY",
    "POSTGRES_PASSWORD",
    "APP_DB_PASSWORD",
    "BACKUP_DB_PASSWORD",
    "REDIS_PASSWORD",
    "MINIO_ROOT_PASSWORD",
)

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
    # URL-safe, so it can be put into DATABASE_URL/REDIS_URL without quoting; 64 characters,
    # past Django's own minimum for SECRET_KEY (50). Never starting with "-", which command-line
    # tools given it as an argument (mc alias set ... SECRET) would take for an option.
    while (secret := secrets.token_urlsafe(48)).startswith("-"):
        pass
    return secret


def compose_project_name(root: Path) -> str:
    """A compose project name of this checkout's own: `shop-<folder>-<hash of its path>`.

    Docker names the volumes after the project and keeps a bind volume's host path from its
    first `up`, so two checkouts with one project name would share one database.
    """
    folder = re.sub(r"[^a-z0-9]+", "-", root.resolve().name.lower()).strip("-")[:20] or "checkout"
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]
    return f"shop-{folder}-{digest}"


def host_values(root: Path) -> dict[str, str]:
    """Values of a new .env that depend on this machine rather than on the example."""
    example = read_env_file(root / ".env.example")
    values = {
        # Docker's local volume driver binds only absolute paths.
        "DATA_PATH": str(resolve(example.get("DATA_PATH", "./data"), root)),
        "BACKUP_PATH": str(resolve(example.get("BACKUP_PATH", "./backups"), root)),
        "COMPOSE_PROJECT_NAME": compose_project_name(root),
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


def add_missing_project_name(root: Path = PROJECT_ROOT) -> str | None:
    """An .env from before COMPOSE_PROJECT_NAME gets one (appended; nothing else changes)."""
    env_file = root / ".env"
    if "COMPOSE_PROJECT_NAME" in read_env_file(env_file):
        return None
    name = compose_project_name(root)
    with env_file.open("a") as out:
        out.write("\n# Added by make init: this checkout's own compose project (its volumes).\n")
        out.write(f"COMPOSE_PROJECT_NAME={name}\n")
    return name


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
    # Written by the shop's containers and by nginx (which runs as the same user); postgres/ and
    # redis/ are looked after by their own images.
    app_writable = {data / "uploads", data / "logs", data / "nginx-logs", backups}
    for path, mode in wanted:
        if not path.exists():
            path.mkdir(parents=True)
            created.append(path)
            path.chmod(mode)  # whatever the umask
            if app_owner and path in app_writable:
                os.chown(path, *app_owner)
        elif path.stat().st_uid == os.geteuid():
            # Only for our own directories: PostgreSQL in Docker or the runner may own postgres/.
            path.chmod(mode)
    tighten(backups, 0o750)
    return created


def tighten(path: Path, mode: int) -> None:
    """Take away any permission beyond mode (the backups hold every customer's data)."""
    current = path.stat().st_mode & 0o777
    if current & ~mode and (os.geteuid() in (0, path.stat().st_uid)):
        path.chmod(current & mode)


def docker_app_owner(root: Path = PROJECT_ROOT) -> tuple[int, int] | None:
    """As root, the image's user (APP_UID/APP_GID) must own what it writes on the host."""
    if os.geteuid() != 0:
        return None
    return int(setting("APP_UID", "10001", root)), int(setting("APP_GID", "10001", root))


# Volume name -> the host directory it must be bound to, for the check below.
def expected_volume_paths(root: Path = PROJECT_ROOT) -> dict[str, Path]:
    data = data_path(root)
    paths = {volume: data / directory for volume, (directory, _) in DATA_DIRECTORIES.items()}
    paths["backup_data"] = backup_path(root)
    return paths


def stale_volumes(project: str, expected: dict[str, Path], inspect=None) -> list[str]:
    """The volumes of this compose project that Docker binds to another directory than .env says.

    Docker keeps a bind volume's `device` from its first `up`; `down` leaves the volume, so a
    changed DATA_PATH (or another checkout with the same project name) would silently get the
    old directories. inspect(name) -> the volume's driver options, or None if it does not exist.
    """
    inspect = inspect or docker_volume_options
    problems = []
    for volume, path in expected.items():
        options = inspect(f"{project}_{volume}")
        if options is None:
            continue
        device = options.get("device", "")
        if Path(device) != path:
            problems.append(f"volume {project}_{volume} is bound to {device}, but .env says {path}")
    return problems


def docker_volume_options(name: str) -> dict | None:
    result = subprocess.run(
        ["docker", "volume", "inspect", name], capture_output=True, text=True, check=False, timeout=30
    )
    if result.returncode != 0:
        return None
    return json.loads(result.stdout)[0].get("Options") or {}


def check_compose_volumes(root: Path = PROJECT_ROOT) -> list[str]:
    """stale_volumes() for this checkout, when Docker is there to ask; [] otherwise."""
    if not shutil.which("docker"):
        return []
    if subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=30).returncode != 0:
        return []
    project = setting("COMPOSE_PROJECT_NAME", "", root)
    return stale_volumes(project, expected_volume_paths(root)) if project else []


# pgBackRest's TLS between the database side and the repository host (README "Point-in-time
# recovery in compose"): file name -> certificate common name (= compose service name).
PGBACKREST_TLS_DIR = Path("database") / "pgbackrest" / "tls"
PGBACKREST_TLS_IDENTITIES = {"pg": "pgbackrest-db", "repo": "pgbackrest-repo"}


def openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def create_pgbackrest_tls(directory: Path, repo_owner: tuple[int, int] | None = None) -> list[Path]:
    """A CA of the stack's own and one certificate per side, when any file is missing.

    The CA's key is thrown away once both are signed: nothing else can be issued with it. Keys
    are private (pgBackRest refuses any other mode); repo.key belongs to the shop image's user
    (repo_owner, when root prepares the files for it). The database image copies pg.key for its
    own user at start.
    """
    wanted = [directory / "ca.crt"] + [
        directory / f"{name}.{ext}" for name in PGBACKREST_TLS_IDENTITIES for ext in ("crt", "key")
    ]
    if all(path.exists() for path in wanted):
        return []
    if not shutil.which("openssl"):
        raise RuntimeError(
            "openssl is not installed: it makes the pgBackRest TLS certificates "
            f"({directory}). Install it (Debian/Ubuntu: apt-get install openssl) and run make init again."
        )
    directory.mkdir(parents=True, exist_ok=True)
    old_umask = os.umask(0o077)
    scratch = ["ca.key", "ca.srl"]
    try:
        ca_subject = "/CN=shop pgBackRest CA"
        openssl("req", "-x509", "-newkey", "rsa:3072", "-nodes", "-days", "3650", "-subj", ca_subject,
                "-keyout", "ca.key", "-out", "ca.crt", cwd=directory)  # fmt: skip
        for name, common_name in PGBACKREST_TLS_IDENTITIES.items():
            scratch += [f"{name}.csr", f"{name}.ext"]
            (directory / f"{name}.ext").write_text(
                f"subjectAltName=DNS:{common_name}\nextendedKeyUsage=serverAuth,clientAuth\n"
            )
            openssl("req", "-newkey", "rsa:3072", "-nodes", "-subj", f"/CN={common_name}",
                    "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=directory)  # fmt: skip
            openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                    "-CAcreateserial", "-days", "3650", "-extfile", f"{name}.ext", "-out", f"{name}.crt",
                    cwd=directory)  # fmt: skip
    finally:
        os.umask(old_umask)
        for leftover in scratch:
            (directory / leftover).unlink(missing_ok=True)
    for path in wanted:
        path.chmod(0o600 if path.suffix == ".key" else 0o644)
    if repo_owner:
        os.chown(directory / "repo.key", *repo_owner)
    return wanted


def main() -> int:
    if ensure_env_file():
        print(f"Created {PROJECT_ROOT / '.env'} with new secrets (mode 600). Review it before going live.")
    else:
        print(f"{PROJECT_ROOT / '.env'} exists; left as it is.")
        if name := add_missing_project_name():
            print(f"Added COMPOSE_PROJECT_NAME={name} to .env (this checkout's own volumes).")
    for path in create_data_dirs(data_path(), backup_path(), docker_app_owner()):
        print(f"Created {path}")
    try:
        if create_pgbackrest_tls(PROJECT_ROOT / PGBACKREST_TLS_DIR, docker_app_owner()):
            print(f"Created the pgBackRest TLS certificates in {PGBACKREST_TLS_DIR}/ (never commit them)")
    except RuntimeError as exc:
        print(f"STOP: {exc}", file=sys.stderr)
        return 1
    if problems := check_compose_volumes():
        print(
            "STOP: the Docker volumes of this stack point at other directories than .env says:",
            file=sys.stderr,
        )
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        print(
            "Docker keeps a bind volume's directory from its first `up`. Remove the volume objects with\n"
            "  docker compose down --volumes\n"
            "(for these bind volumes it deletes nothing on disk: the data in those directories stays),\n"
            "then start again. Or set DATA_PATH/BACKUP_PATH in .env back to the directories above.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Drive a copy of the project as a compose stack: `make init`, one build, `docker compose ...`.

The copy is what a user clones (the files git knows of), made in a directory of its own, so its
`.env`, DATA_PATH and BACKUP_PATH are fresh and its compose project name is its own.
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ops.init_stack import PGBACKREST_TLS_DIR, openssl, read_env_file

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BUILD_ON_HOST_NETWORK = HERE / "compose-build-host.yml"
PRODUCTION_S3 = HERE / "compose-prod-s3.yml"
STANDIN_MC = HERE / "compose-standin-mc.yml"
S3_OVER_TLS = HERE / "compose-s3-tls.yml"
TEST_HEALTH_PACE = HERE / "compose-test-health.yml"
# The S3 CA for pgBackRest, where the README tells a shop to put its own (PITR_S3_CA_FILE).
S3_CA_IN_CONTAINERS = "/etc/pgbackrest/tls/s3-ca.crt"
DEVELOPMENT_FILES = [
    "docker-compose.yml",
    "docker-compose.override.yml",
    str(STANDIN_MC),
    str(TEST_HEALTH_PACE),
]
# MinIO as the production S3, behind a TLS proxy (compose-s3-tls.yml).
PRODUCTION_FILES = [
    "docker-compose.yml",
    "docker-compose.prod.yml",
    str(PRODUCTION_S3),
    str(S3_OVER_TLS),
    str(TEST_HEALTH_PACE),
]
APP_SERVICES = ("migrate", "backend", "worker", "backup", "beat")


def docker_missing() -> str | None:
    """Why the compose stacks cannot run here, or None when they can."""
    if not shutil.which("docker"):
        return "docker is not installed"
    version = subprocess.run(["docker", "compose", "version", "--short"], capture_output=True, text=True)
    if version.returncode != 0 or not version.stdout.strip().lstrip("v").startswith("2"):
        return "Docker Compose v2 (`docker compose`) is not installed"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "the Docker engine does not answer (`docker info` fails)"
    return None


def wait_for(condition, timeout: float, message, interval: float = 1.0):
    """condition()'s first true value within timeout seconds; else AssertionError(message, or
    message() when it is callable: a message that reads logs is made only on failure)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(message() if callable(message) else message)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def copy_checkout(destination: Path) -> None:
    """The files a clone has: tracked and new ones, not what .gitignore leaves out."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (entry.decode() for entry in listed)):
        source = PROJECT_ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def make_s3_tls_certificate(root: Path) -> None:
    """For compose-s3-tls.yml: a throwaway CA (its key deleted once used) and a certificate for
    the name s3-tls, the TLS proxy in front of MinIO; the CA where pgBackRest's PITR_S3_CA_FILE
    names it (database/pgbackrest/tls/s3-ca.crt, mounted by the repository host's services)."""
    directory = root / "tests" / "docker" / "s3-tls"
    ca = root / PGBACKREST_TLS_DIR / "s3-ca.crt"
    (directory / "s3-tls.ext").write_text("subjectAltName=DNS:s3-tls\nextendedKeyUsage=serverAuth\n")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test S3 CA",
            "-keyout", "ca.key", "-out", str(ca), cwd=directory)  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=s3-tls",
            "-keyout", "s3-tls.key", "-out", "s3-tls.csr", cwd=directory)  # fmt: skip
    openssl("x509", "-req", "-in", "s3-tls.csr", "-CA", str(ca), "-CAkey", "ca.key", "-set_serial", "2",
            "-days", "2", "-extfile", "s3-tls.ext", "-out", "s3-tls.crt", cwd=directory)  # fmt: skip
    for scratch in ("ca.key", "s3-tls.csr", "s3-tls.ext"):
        (directory / scratch).unlink(missing_ok=True)
    for path in (ca, directory / "s3-tls.crt", directory / "s3-tls.key"):
        path.chmod(0o644)  # read by the proxy's and the shop's users; a test's throwaway key


class ComposeProject:
    """One checkout and the compose files it runs with."""

    def __init__(self, root: Path, files: list[str]):
        self.root = root
        self.files = files

    @classmethod
    def fresh(cls) -> "ComposeProject":
        root = Path(tempfile.mkdtemp(prefix="shop-compose-"))
        root.chmod(0o755)
        copy_checkout(root)
        return cls(root, DEVELOPMENT_FILES)

    def with_files(self, files: list[str]) -> "ComposeProject":
        return ComposeProject(self.root, files)

    # --- .env ---------------------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        return read_env_file(self.root / ".env")

    def set_env(self, **values: str) -> None:
        lines = (self.root / ".env").read_text().splitlines()
        for name, value in values.items():
            lines = [line for line in lines if not line.startswith(f"{name}=")] + [f"{name}={value}"]
        (self.root / ".env").write_text("\n".join(lines) + "\n")

    @property
    def data(self) -> Path:
        return Path(self.env["DATA_PATH"])

    @property
    def backups(self) -> Path:
        return Path(self.env["BACKUP_PATH"])

    @property
    def name(self) -> str:
        return self.env["COMPOSE_PROJECT_NAME"]

    # --- commands -----------------------------------------------------------------------------
    def run(self, *command: str, check: bool = True, timeout: float = 900, env=None):
        result = subprocess.run(
            list(command),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} exited with {result.returncode}:\n{result.stdout[-3000:]}\n"
                f"{result.stderr[-5000:]}"
            )
        return result

    def compose(self, *args: str, check: bool = True, timeout: float = 900, env=None):
        files = [arg for file in self.files for arg in ("-f", file)]
        return self.run("docker", "compose", *files, *args, check=check, timeout=timeout, env=env)

    def up(self) -> float:
        began = time.monotonic()
        result = self.compose("up", "--detach", "--wait", "--wait-timeout", "600", check=False)
        if result.returncode != 0:
            raise AssertionError(
                f"up --wait failed:\n{result.stderr[-3000:]}\n{self.status()}\n{self.logs()}"
            )
        return time.monotonic() - began

    def down(self, *args: str) -> None:
        self.compose("down", *args, timeout=300)

    def exec(self, service: str, *command: str, env: dict[str, str] | None = None, check: bool = True):
        options = [arg for name, value in (env or {}).items() for arg in ("-e", f"{name}={value}")]
        return self.compose("exec", "-T", *options, service, *command, check=check)

    def manage(self, *args: str, service: str = "backend", env=None, check: bool = True):
        return self.exec(service, "python", "manage.py", *args, env=env, check=check)

    def shell(self, code: str, service: str = "backend") -> str:
        """The last line a Python snippet prints in `manage.py shell`."""
        return self.manage("shell", "--verbosity", "0", "-c", code, service=service).stdout.strip()

    # --- containers ---------------------------------------------------------------------------
    def container(self, service: str) -> dict:
        ids = self.compose("ps", "--all", "--quiet", service).stdout.split()
        assert len(ids) == 1, f"{service}: containers {ids}"
        return json.loads(self.run("docker", "inspect", ids[0]).stdout)[0]

    def status(self) -> str:
        return self.compose("ps", "--all", check=False).stdout

    def logs(self, *services: str, tail: int = 40) -> str:
        return self.compose("logs", "--no-color", "--tail", str(tail), *services, check=False).stdout[-8000:]

    def wait_healthy(self, service: str, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.container(service)["State"]
            if state.get("Running") and state.get("Health", {}).get("Status") == "healthy":
                return state
            time.sleep(2)
        raise AssertionError(
            f"{service} is not healthy after {timeout} s:\n{self.status()}\n{self.logs(service)}"
        )

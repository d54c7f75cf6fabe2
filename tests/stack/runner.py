"""Drive the Docker-less stack (`python -m ops.runner`) from tests: start, wait, stop, clean up."""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from ops.runner import PROJECT_ROOT, RunnerConfig

FOR_THE_CALLER_ONLY = ("REDIS_DB_", "REDIS_URL", "DATABASE_URL", "CELERY_")
STARTED = re.compile(r"\| (\S+) started \(pid=(\d+)\)")


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on right now (the kernel picks them, all different)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def make_data_root() -> Path:
    """A fresh directory the postgres user and nginx's workers can reach (pytest's tmp_path,
    under /tmp/pytest-of-root, is closed to other users)."""
    root = Path(tempfile.mkdtemp(prefix="shop-stack-"))
    root.chmod(0o755)
    return root


def stack_environment(root: Path) -> dict[str, str]:
    http, app, postgres, redis = free_ports(4)
    # The stack has a Redis and a PostgreSQL of its own: the caller's choices (pytest's
    # REDIS_DB_* for the machine's Redis, DATABASE_URL, ...) do not apply to it.
    env = {name: value for name, value in os.environ.items() if not name.startswith(FOR_THE_CALLER_ONLY)}
    env.update(
        DJANGO_READ_DOT_ENV="false",
        DATA_PATH=str(root / "data"),
        BACKUP_PATH=str(root / "backups"),
        RUNNER_HTTP_PORT=str(http),
        RUNNER_APP_PORT=str(app),
        RUNNER_POSTGRES_PORT=str(postgres),
        RUNNER_REDIS_PORT=str(redis),
        POSTGRES_USER="shop",
        POSTGRES_DB="shop",
        POSTGRES_PASSWORD="stack-test-postgres-password",
        APP_DB_PASSWORD="stack-test-app-password",
        BACKUP_DB_PASSWORD="stack-test-backup-password",
        REDIS_PASSWORD="stack-test-redis-password",
        DJANGO_SECRET_KEY="stack-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        GUNICORN_WORKERS="2",
    )
    return env


class StackRunner:
    """One `python -m ops.runner` process (honcho after the bootstrap) and what it started."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.env = env
        self.config = RunnerConfig.from_environment(env)
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return self.config.url.rstrip("/")

    def start(self, timeout: float = 120) -> float:
        """Start and wait until /readyz answers 200 through nginx; return the seconds it took."""
        began = time.monotonic()
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ops.runner"],
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = began + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the runner exited with {self.process.returncode}:\n{self.log_tail()}")
            if self._ready():
                return time.monotonic() - began
            time.sleep(0.3)
        raise AssertionError(f"the stack was not ready after {timeout} s:\n{self.log_tail()}")

    def _ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except requests.RequestException:  # not listening yet, or gunicorn still booting
            return False

    def stop(self, timeout: float = 30) -> int:
        """Ctrl-C, as a user would; return honcho's exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        finally:
            self.process = None

    def started_process_groups(self) -> list[int]:
        """honcho starts every process in a group of its own and logs its pid."""
        return [int(pid) for _, pid in STARTED.findall(self.log_path.read_text())]

    def leftover_process_groups(self) -> list[int]:
        alive = []
        for group in self.started_process_groups():
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                continue
            alive.append(group)
        return alive

    def kill_everything(self) -> None:
        """Teardown, also after a failure: nothing may outlive the test."""
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                with_suppressed_lookup(os.killpg, self.process.pid, signal.SIGKILL)
                self.process.wait()
            self.process = None
        for group in self.leftover_process_groups():
            with_suppressed_lookup(os.killpg, group, signal.SIGKILL)
        # A server the runner started with pg_ctl while bootstrapping runs in a session of its own.
        for pid_file in self.config.data.glob("postgres*/postmaster.pid"):
            pid = int(pid_file.read_text().split()[0])
            if str(self.config.data).encode() in proc_cmdline(pid):  # not a recycled pid
                with_suppressed_lookup(os.kill, pid, signal.SIGQUIT)  # immediate shutdown

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])

    def manage(self, *args: str, extra_env: dict[str, str] | None = None) -> str:
        """`manage.py` against the running stack, the way the README says: `ops.runner manage`."""
        env = {**self.env, **(extra_env or {})}
        result = subprocess.run(
            [sys.executable, "-m", "ops.runner", "manage", *args],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout


def proc_cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def with_suppressed_lookup(function, *args) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        function(*args)


def remove_data_root(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)

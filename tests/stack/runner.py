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
from collections.abc import Iterator
from pathlib import Path

import requests

from ops.runner import PROJECT_ROOT, RunnerConfig
from tests.shop_http import STAFF_PASSWORD, STAFF_USER

FOR_THE_CALLER_ONLY = ("REDIS_DB_", "REDIS_URL", "DATABASE_URL", "CELERY_")
STATUS_LINE = re.compile(r"^(\S+)\s+([A-Z]+)\s*(?:pid (\d+))?", flags=re.MULTILINE)


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
    """One `python -m ops.runner` process (supervisord after the bootstrap) and what it started."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.env = env
        self.config = RunnerConfig.from_environment(env)
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return self.config.url.rstrip("/")

    def start(self, *processes: str, timeout: float = 120) -> float:
        """Start and wait until /readyz answers 200 through nginx; return the seconds it took.
        With `processes`, start only those and wait until they run."""
        began = time.monotonic()
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ops.runner", "run", *processes],
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if processes:
            self.wait_until(lambda: all(self.states().get(name) == "RUNNING" for name in processes), timeout)
        else:
            self.wait_until_ready(timeout)
        return time.monotonic() - began

    def wait_until_ready(self, timeout: float = 120) -> float:
        """Wait until /readyz answers 200 through nginx; return the seconds it took."""
        return self.wait_until(self.ready, timeout)

    def wait_until(self, condition, timeout: float) -> float:
        began = time.monotonic()
        while time.monotonic() < began + timeout:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"the runner exited with {self.process.returncode}:\n{self.log_tail()}")
            if condition():
                return time.monotonic() - began
            time.sleep(0.2)
        raise AssertionError(f"not done after {timeout} s: {condition}\n{self.log_tail()}")

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except requests.RequestException:  # not listening yet, or gunicorn still booting
            return False

    def stop(self, timeout: float = 180, how: signal.Signals = signal.SIGINT) -> int:
        """Ctrl-C (or another signal, e.g. SIGHUP: the terminal closed), as a user would;
        return supervisord's exit status."""
        assert self.process is not None
        self.process.send_signal(how)
        try:
            return self.process.wait(timeout)
        finally:
            self.process = None

    def ctl(self, *args: str) -> str:
        """supervisorctl against the running stack, the way the README says: `ops.runner ctl`."""
        result = subprocess.run(
            [sys.executable, "-m", "ops.runner", "ctl", *args],
            cwd=PROJECT_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,  # `status` exits 3 when a process is not running
        )
        return result.stdout + result.stderr

    def status(self) -> dict[str, tuple[str, int | None]]:
        """Each process's state (RUNNING, BACKOFF, FATAL, ...) and pid, from supervisorctl."""
        return {
            name: (state, int(pid) if pid else None)
            for name, state, pid in STATUS_LINE.findall(self.ctl("status"))
        }

    def states(self) -> dict[str, str]:
        return {name: state for name, (state, _) in self.status().items()}

    def pids(self) -> dict[str, int]:
        return {name: pid for name, (_, pid) in self.status().items() if pid}

    def wait_until_settled(self, timeout: float = 120) -> None:
        """Every process RUNNING (past its startsecs) and /readyz 200."""
        self.wait_until(lambda: set(self.states().values()) == {"RUNNING"} and self.ready(), timeout)

    def supervisord_log(self) -> str:
        path = self.config.data / "logs" / "supervisord.log"
        return path.read_text() if path.exists() else ""

    def program_log(self, name: str) -> str:
        """What one process wrote (stdout and stderr): DATA_PATH/logs/NAME.log."""
        path = self.config.data / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def started_here(self, pid: int) -> bool:
        """This stack's processes inherit DATA_PATH, unique per test. Those that overwrite their
        environment with a process title work under DATA_PATH (PostgreSQL, Redis) or name it in
        their command line (nginx's master)."""
        data = str(self.config.data)
        environment = b"\0" + read_bytes(Path(f"/proc/{pid}/environ"))
        return (
            f"\0DATA_PATH={data}\0".encode() in environment
            or data.encode() in read_bytes(Path(f"/proc/{pid}/cmdline"))
            or working_directory(pid).is_relative_to(data)
        )

    def stack_processes(self) -> list[int]:
        """Every live process this stack started, grandchildren included (gunicorn's workers,
        PostgreSQL's backends): those started here and the process groups they lead (supervisord
        gives each program one; the test's own group is not led by one of them)."""
        groups = {}
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit() and int(proc.name) != os.getpid():
                with contextlib.suppress(ProcessLookupError):
                    groups[int(proc.name)] = os.getpgid(int(proc.name))
        ours = {pid for pid in groups if self.started_here(pid)}
        return sorted(pid for pid, group in groups.items() if pid in ours or group in ours)

    def supervisord_pid(self) -> int:
        """supervisord runs in a session of its own, under `python -m ops.runner`."""
        return int((self.config.run_dir / "supervisord.pid").read_text())

    def leftover_processes(self) -> list[int]:
        return [pid for pid in self.stack_processes() if not is_zombie(pid)]

    def kill_everything(self, graceful: bool = True) -> None:
        """Teardown, also after a failure: nothing may outlive the test. Not `graceful`: for a
        stack whose data is thrown away, no orderly stop, PostgreSQL's immediate shutdown and
        SIGKILL for the rest (supervisord first, so that it restarts nothing meanwhile)."""
        if self.process is not None and not graceful:
            with contextlib.suppress(OSError, ValueError):  # no pid file: it never got that far
                with_suppressed_lookup(os.kill, self.supervisord_pid(), signal.SIGKILL)
            with_suppressed_lookup(os.kill, self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(90)
            except subprocess.TimeoutExpired:
                with_suppressed_lookup(os.kill, self.process.pid, signal.SIGKILL)
                self.process.wait()
            self.process = None
        # PostgreSQL first with an immediate shutdown, which also releases its shared memory.
        for pid_file in self.config.data.glob("postgres*/postmaster.pid"):
            pid = int(pid_file.read_text().split()[0])
            if pid in self.stack_processes():  # not a recycled pid
                with_suppressed_lookup(os.kill, pid, signal.SIGQUIT)
                with contextlib.suppress(AssertionError):
                    self.wait_until(lambda pid=pid: pid not in self.leftover_processes(), 10)
        for pid in self.stack_processes():
            with_suppressed_lookup(os.kill, pid, signal.SIGKILL)

    def log_tail(self, lines: int = 60) -> str:
        """The runner's output (supervisord's log included) and the end of each process's log."""
        parts = ["\n".join(self.log_path.read_text().splitlines()[-lines:])]
        for log in sorted((self.config.data / "logs").glob("*.log")):
            if log.name != "supervisord.log":
                parts.append(
                    f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                )
        return "\n".join(parts)

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

    def add_staff_and_category(self) -> str:
        """The 'Mugs' category and the staff user of tests/shop_http.py; returns the category's pk."""
        category_id = self.manage(
            "shell", "--verbosity", "0", "-c",
            "from shop.catalog.models import Category; "
            "print(Category.objects.create(name='Mugs', slug='mugs').pk)",
        ).strip()  # fmt: skip
        self.manage(
            "createsuperuser", "--noinput", "--username", STAFF_USER, "--email", "staff@example.com",
            extra_env={"DJANGO_SUPERUSER_PASSWORD": STAFF_PASSWORD},
        )  # fmt: skip
        return category_id


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # gone meanwhile
        return b""


def working_directory(pid: int) -> Path:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:  # gone meanwhile
        return Path("/nonexistent")


def is_zombie(pid: int) -> bool:
    """Exited but not yet reaped by its parent: nothing left to stop."""
    stat = read_bytes(Path(f"/proc/{pid}/stat"))
    return stat.rsplit(b")", 1)[-1].split()[:1] == [b"Z"]


def with_suppressed_lookup(function, *args) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        function(*args)


def remove_data_root(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def fresh_stack(log_path: Path, graceful_stop: bool = True) -> Iterator[StackRunner]:
    """A runner (not started yet) on a fresh DATA_PATH and free ports; afterwards, also after a
    failure, nothing it started is left running and its data is gone."""
    root = make_data_root()
    runner = StackRunner(stack_environment(root), log_path)
    try:
        yield runner
    finally:
        runner.kill_everything(graceful=graceful_stop)
        remove_data_root(root)

"""The Docker-less stack under supervisord, like compose's `restart: unless-stopped`: a process
that dies is started again while the others keep running, one that keeps failing is given up
on; Ctrl-C stops everything in order, and PostgreSQL shuts down cleanly even with clients.

One stack for the module (starting one takes a while); the tests leave it running and ready.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from ops.runner import PROJECT_ROOT, START_RETRIES
from tests.stack import programs
from tests.stack.runner import StackRunner, fresh_stack, is_zombie

pytestmark = pytest.mark.stack

TIMINGS: dict[str, float] = {}
BACK_WITHIN = 30  # seconds from a SIGKILL to /readyz 200 again (about 3 s for Redis, 6 s for PostgreSQL here)
UNCLEAN_START = ("not properly shut down", "automatic recovery in progress")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    programs.stack_programs()  # skip, or fail on CI, without them
    try:
        with fresh_stack(tmp_path_factory.mktemp("stack") / "stack.log") as runner:
            TIMINGS["first start"] = runner.start()
            yield runner
    finally:
        print("\nsupervised stack timings (s):", {name: round(value, 1) for name, value in TIMINGS.items()})


def all_but(name: str, pids: dict[str, int]) -> dict[str, int]:
    return {other: pid for other, pid in pids.items() if other != name}


def kill_and_wait_until_back(stack: StackRunner, name: str) -> float:
    """SIGKILL one process; the seconds until supervisord has a new one and /readyz is 200."""
    before = stack.pids()
    killed_at = time.monotonic()
    os.kill(before[name], signal.SIGKILL)
    stack.wait_until(
        lambda: stack.ready() and stack.pids().get(name) not in (None, before[name]), BACK_WITHIN
    )
    seconds = time.monotonic() - killed_at

    assert all_but(name, stack.pids()) == all_but(name, before)  # the others kept running, untouched
    assert f"exited: {name} (terminated by SIGKILL; not expected)" in stack.supervisord_log()
    return seconds


def test_a_killed_redis_is_started_again_and_the_others_keep_running(stack):
    stack.wait_until_settled()
    TIMINGS["redis back after SIGKILL"] = kill_and_wait_until_back(stack, "redis")


def test_a_killed_postgres_is_started_again_and_the_others_keep_running(stack):
    stack.wait_until_settled()
    TIMINGS["postgres back after SIGKILL"] = kill_and_wait_until_back(stack, "postgres")


def occupy_port(port: int, timeout: float = 15) -> socket.socket:
    """Listen on `port` as soon as it is free (a socket of the dead process may linger)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_server(("127.0.0.1", port))
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_a_process_that_keeps_failing_is_given_up_on_and_the_others_keep_running(stack):
    stack.wait_until_settled()
    before = stack.pids()
    supervisord = stack.supervisord_pid()
    log_before = len(stack.supervisord_log())
    # Redis crashes and cannot start again, because something else took its port meanwhile.
    # supervisord is paused while the port changes hands, so it cannot restart Redis first.
    os.kill(supervisord, signal.SIGSTOP)
    try:
        os.kill(before["redis"], signal.SIGKILL)
        stack.wait_until(lambda: is_zombie(before["redis"]), 10)  # dead, its port free
        squatter = occupy_port(stack.config.redis_port)
    finally:
        os.kill(supervisord, signal.SIGCONT)
    with squatter:
        began = time.monotonic()
        stack.wait_until(lambda: stack.states().get("redis") == "FATAL", 90)
        TIMINGS["redis given up on (FATAL) after"] = time.monotonic() - began

        log = stack.supervisord_log()[log_before:]
        assert "gave up: redis entered FATAL state, too many start retries too quickly" in log
        assert log.count("spawned: 'redis'") == 1 + START_RETRIES  # tried again with backoff first
        assert "Address already in use" in stack.program_log("redis")
        assert all_but("redis", stack.pids()) == all_but("redis", before)

    # The operator starts it again once the cause is gone.
    assert "redis: started" in stack.ctl("start", "redis")
    stack.wait_until_ready(60)


def test_the_operator_stops_and_starts_one_process_and_a_stopped_one_stays_stopped(stack):
    stack.wait_until_settled()
    before = stack.pids()

    assert "nginx: stopped" in stack.ctl("stop", "nginx")
    time.sleep(3)  # supervisord does not bring back a process the operator stopped
    assert stack.states()["nginx"] == "STOPPED"
    assert not stack.ready()
    assert "nginx: started" in stack.ctl("start", "nginx")
    stack.wait_until_ready(30)
    assert all_but("nginx", stack.pids()) == all_but("nginx", before)


# --- Ctrl-C with clients connected ------------------------------------------------------------


def psql(stack: StackRunner, *args: str) -> list[str]:
    config = stack.config
    return [programs.stack_programs().psql, "-X", "-h", "127.0.0.1", "-p", str(config.postgres_port), "-U",
            config.postgres_user, "-d", config.postgres_db, *args]  # fmt: skip


def client_environment(stack: StackRunner) -> dict[str, str]:
    """Not the stack's environment: a client is not one of its processes."""
    return {
        "PATH": os.environ["PATH"],
        "PGPASSWORD": stack.config.postgres_password,
        "PGAPPNAME": "test-client",
    }


def psql_session(stack: StackRunner, sql: str = "") -> subprocess.Popen:
    """A psql connected to the stack's database that stays open (reading its standard input)."""
    process = subprocess.Popen(
        psql(stack, "-q"),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=client_environment(stack),
        text=True,
    )
    process.stdin.write(sql)
    process.stdin.flush()
    return process


def sessions(stack: StackRunner, condition: str) -> int:
    """How many sessions pg_stat_activity shows with `condition` (written by the tests)."""
    sql = f"SELECT count(*) FROM pg_stat_activity WHERE {condition}"  # noqa: S608
    result = subprocess.run(
        psql(stack, "-At", "-c", sql),
        env=client_environment(stack),
        capture_output=True,
        text=True,
        check=True,
    )
    return int(result.stdout)


def cluster_state(stack: StackRunner) -> str:
    """What PostgreSQL wrote in its control file: `shut down` after a clean shutdown."""
    pg_controldata = programs.stack_programs().postgres_bin / "pg_controldata"
    output = subprocess.run(
        [str(pg_controldata), str(stack.config.postgres_dir)], capture_output=True, text=True, check=True
    ).stdout
    return next(line.split(":", 1)[1].strip() for line in output.splitlines() if "cluster state" in line)


def stop_and_start_again(stack: StackRunner, clients: list[subprocess.Popen]) -> float:
    """Ctrl-C with the clients connected, a clean PostgreSQL shutdown, then a clean start.
    Returns the seconds the stop took."""
    began = time.monotonic()
    exit_status = stack.stop()
    seconds = time.monotonic() - began
    try:
        assert cluster_state(stack) == "shut down"
        assert exit_status == 0
        assert "received fast shutdown request" in stack.program_log("postgres")
        for client in clients:
            if client.stdin:
                client.stdin.close()  # an idle psql finds out when it sends something next
            client.wait(30)
        assert stack.leftover_processes() == []
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait()

    runner_log, postgres_log = len(stack.log_path.read_text()), len(stack.program_log("postgres"))
    stack.start()
    # The bootstrap server (the runner's own output) and the supervised one both found it clean.
    started = stack.log_path.read_text()[runner_log:] + stack.program_log("postgres")[postgres_log:]
    assert not [line for line in started.splitlines() if any(text in line for text in UNCLEAN_START)]
    return seconds


def test_ctrl_c_with_an_idle_client_shuts_postgres_down_cleanly(stack):
    stack.wait_until_ready()
    idle = psql_session(stack)
    stack.wait_until(lambda: sessions(stack, "application_name = 'test-client' AND state = 'idle'") == 1, 30)

    TIMINGS["stop with an idle client"] = stop_and_start_again(stack, [idle])


def test_ctrl_c_with_a_backup_running_shuts_postgres_down_cleanly(stack):
    stack.wait_until_ready()
    # A client holds a lock the backup needs, so `backup_now` stays in flight (its snapshot,
    # its advisory lock and pg_dump all connected) until the stack is stopped.
    holder = psql_session(stack, "BEGIN; LOCK TABLE catalog_product IN ACCESS EXCLUSIVE MODE;\n")
    stack.wait_until(lambda: sessions(stack, "state = 'idle in transaction'") == 1, 30)
    backup = subprocess.Popen(
        [sys.executable, "-m", "ops.runner", "manage", "backup_now", "--no-upload"],
        cwd=PROJECT_ROOT,
        env=stack.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stack.wait_until(lambda: sessions(stack, "wait_event_type = 'Lock'") >= 1, 60)

    TIMINGS["stop with a backup running"] = stop_and_start_again(stack, [holder, backup])
    assert backup.returncode != 0  # the backup was cut short, and says so


def test_closing_the_terminal_stops_the_stack_like_ctrl_c(stack):
    """A closed terminal sends SIGHUP, which supervisord alone would take for "reload" and keep
    every process running with nobody to stop them."""
    stack.wait_until_ready()
    exit_status = stack.stop(how=signal.SIGHUP)
    assert exit_status == 0
    assert cluster_state(stack) == "shut down"
    assert stack.leftover_processes() == []
    stack.start()

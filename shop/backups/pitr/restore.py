"""Restore to a time (`manage.py restore_backup --to "2026-11-28 10:15:00+00"` or `--to latest`).

1. Check: a pgBackRest repository has a physical backup that finished before the target and WAL
   archived after it (`pgbackrest info`; repository.py chooses repo1 or repo2, or takes --repo);
   the live server must be stopped (the runner's `python -m ops.runner restore --to ...` stops
   it and starts it again afterwards).
2. `pgbackrest restore --repo=N --type=time --target=T --target-action=promote` (`--to latest`: to
   the end of the archive) into a NEW directory next to the live one, `<live>.pitr-<stamp>`; the
   restore_command it writes reads the WAL from the same repository.
3. Start a temporary PostgreSQL on it (127.0.0.1, a spare port) and wait until it has replayed
   the WAL up to the target and promoted itself (a new timeline, archived like any other).
4. Read the product images the restored rows name (shop/catalog/media.py) and bring each into
   MEDIA_ROOT from the blob store (BACKUP_PATH/blobs), or from S3 when the blob store lacks it
   (images.py: decrypted with the identity if need be), its SHA-256 checked; a missing thumbnail
   is made again from its image. Any image missing or wrong: stop here, naming them; the live data
   directory was never touched.
5. Stop the temporary server; switch the directories (switch.py: the previous one is kept as
   `<live>.before-pitr-<stamp>` for rollback).
"""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from django.conf import settings

from shop.backups import status
from shop.backups.pitr import config, images, pgbackrest, repository, switch
from shop.backups.pitr.pgbackrest import PitrError
from shop.catalog import media

RECOVERY_TIMEOUT = 3600  # seconds the temporary server may take to replay WAL
TARGET_NOT_REACHED = "recovery ended before configured recovery target was reached"


class TargetBeyondArchive(PitrError):
    """The archive ends before the target time (the newest WAL was lost with the server)."""


@dataclass
class PitrPlan:
    target: datetime | None  # None: the end of the archive ("latest")
    live: Path
    restored: Path
    stamp: str
    backup: dict
    repo: int  # the pgBackRest repository restored from (repository.py chooses it)
    other_repos: list[int] = field(default_factory=list)  # those that could serve the target too
    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def target_text(self) -> str:
        return self.target.isoformat(sep=" ") if self.target else "latest"


def parse_target(text: str, now: datetime | None = None) -> datetime | None:
    """'latest' (None) or a time with its UTC offset, not in the future."""
    if text.strip().lower() == "latest":
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise PitrError(
            f'--to {text!r} is not a time: give one like "2026-11-28 10:15:00+00" '
            "(with its UTC offset) or latest"
        ) from None
    if moment.tzinfo is None:
        raise PitrError(f'--to {text!r} has no UTC offset: add one, e.g. "{text}+00" for UTC')
    if moment > (now or datetime.now(UTC)):
        raise PitrError(f"--to {text!r} is in the future: use --to latest for the newest state")
    return moment.astimezone(UTC)


def live_directory() -> Path:
    if not settings.PITR_PG_DATA:
        raise PitrError(
            "PITR_PG_DATA (the live PostgreSQL data directory) is not set: run this through "
            "`python -m ops.runner restore --to ...` (or set it to the cluster's directory)"
        )
    return Path(settings.PITR_PG_DATA)


def make_plan(target_text: str, repo: int | None = None, identity: str | None = None) -> PitrPlan:
    pgbackrest.require_enabled()
    target = parse_target(target_text)
    live = live_directory()
    try:
        choice = repository.choose(pgbackrest.info(repo), target, repo)
    except repository.NoRepository as exc:
        raise PitrError(f"cannot restore to {target_text}: {exc}") from None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    plan = PitrPlan(
        target, live, switch.restored_path(live, stamp), stamp, choice.backup, choice.repo, choice.others
    )
    backup = plan.backup
    plan.lines = [
        f"target: {plan.target_text}",
        *choice.lines,
        f"physical backup: {backup['label']} ({backup['type']}, "
        f"finished {backup['stopped'].isoformat(sep=' ')}) in repo{plan.repo}",
        f"WAL archived up to segment {choice.newest_wal} in repo{plan.repo}",
        f"restore into {plan.restored}, replay WAL on a temporary server, bring the images the rows name "
        f"into {settings.MEDIA_ROOT}",
        *images.plan_lines(identity),
        f"then switch: {live} -> {switch.previous_path(live, stamp)} (kept for rollback), "
        f"{plan.restored} -> {live}",
    ]
    return plan


def server_running(data_dir: Path) -> bool:
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def restore_to_time(
    target_text: str,
    *,
    dry_run: bool,
    confirm,
    show,
    report,
    repo: int | None = None,
    identity: str | None = None,
) -> list[str] | None:
    finished = switch.finish_interrupted_switch(live_directory()) if settings.PITR_PG_DATA else None
    if finished:
        report.step(finished)
    plan = make_plan(target_text, repo, identity)
    show(plan.lines)
    if dry_run or not confirm():
        return None
    if server_running(plan.live):
        raise PitrError(
            f"PostgreSQL is running on {plan.live}: stop it first (`python -m ops.runner restore --to ...` "
            "stops it, restores and starts it again)"
        )
    began = time.monotonic()
    try:
        report.step(f"restoring the physical backup from repo{plan.repo} into {plan.restored}")
        restore_files(plan)
        report.step("replaying WAL on a temporary server")
        try:
            with temporary_server(plan.restored) as server:
                names = read_media_names(server.port)
        except TargetBeyondArchive:
            # The WAL after the newest archived segment was lost (the data directory is gone):
            # the newest state there is is the end of the archive, before the target.
            report.step("the archive ends before the target: replaying to the end of the archive")
            drop_recovery_target(plan.restored)
            with temporary_server(plan.restored) as server:
                names = read_media_names(server.port)
            plan.notes.append("the archive ended before the target: restored to the end of the archive")
        report.step(f"bringing {len(names)} image file(s) into place")
        brought = images.bring_images(names, identity, report)
        if brought.problems:
            raise PitrError(
                f"{len(brought.problems)} image(s) named by the restored rows cannot be brought back (the "
                "live data was not touched): " + "; ".join(brought.problems[:20])
            )
    except BaseException:
        shutil.rmtree(plan.restored, ignore_errors=True)
        raise
    report.step("switching the data directories")
    previous = switch.switch(plan.live, plan.restored, plan.stamp)
    seconds = round(time.monotonic() - began, 1)
    summary = [
        f"restored to {plan.target_text} from backup {plan.backup['label']} (repo{plan.repo}) in {seconds} s",
        *plan.notes,
        server.last_transaction,
        f"{len(names)} image file(s) checked in {settings.MEDIA_ROOT}",
        f"{brought.from_s3} image(s) fetched from S3",
        f"previous data directory kept in {previous}" if previous else "there was no previous data directory",
    ]
    record(plan, summary)
    return summary


def record(plan: PitrPlan, summary: list[str]) -> None:
    with status.updating() as current:
        current["last_pitr_restore"] = {
            "target": plan.target_text,
            "repo": plan.repo,
            "at": status.now_iso(),
            "summary": summary,
        }


def os_user_ids() -> tuple[int, int] | None:
    if os.geteuid() != 0 or not settings.PITR_OS_USER:
        return None
    user = pwd.getpwnam(settings.PITR_OS_USER)
    return user.pw_uid, user.pw_gid


def restore_files(plan: PitrPlan) -> None:
    plan.restored.mkdir(mode=0o700)
    ids = os_user_ids()
    if ids:
        os.chown(plan.restored, *ids)
    # --repo also goes into the restore_command pgBackRest writes: the WAL comes from the same one.
    args = [f"--pg1-path={plan.restored}", f"--repo={plan.repo}"]
    if plan.target is None:
        args += ["--type=default"]
    else:
        args += ["--type=time", f"--target={plan.target.isoformat(sep=' ')}", "--target-action=promote"]
    try:
        pgbackrest.run(*args, "restore", timeout=settings.BACKUP_PG_TIMEOUT or None)
    except PitrError as exc:
        # `info` reads a repository's lists, not its files: a backup lost from one shows here.
        hints = [
            f"run it again with --repo {repo} (repo{repo} can serve it too)" for repo in plan.other_repos
        ]
        raise PitrError("; ".join([str(exc), *hints])) from None


def spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_program(name: str) -> str:
    directory = settings.PITR_PG_BIN
    found = str(Path(directory) / name) if directory else shutil.which(name)
    if not found or not Path(found).is_file():
        raise PitrError(f"{name} not found: set PITR_PG_BIN to the PostgreSQL server's bin directory")
    return found


class temporary_server:
    """The restored cluster, started on a spare port until it has finished recovery."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.port = spare_port()
        self.log = Path(tempfile.mkdtemp(prefix="shop-pitr-")) / "postgres.log"

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = pgbackrest.as_user([postgres_program("pg_ctl"), "-D", str(self.data_dir), *args])
        return subprocess.run(command, capture_output=True, text=True, check=check)

    def __enter__(self) -> "temporary_server":
        self.log.parent.chmod(0o777)  # written by the postgres user
        archive = config.archive_settings(
            Path(settings.PITR_PGBACKREST_CONFIG), self.data_dir, settings.PITR_ARCHIVE_TIMEOUT
        )
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "",
            **archive,
        }
        options_text = " ".join(f"-c {name}={_quoted(value)}" for name, value in options.items())
        try:
            started = self._pg_ctl(
                "-w",
                "-t",
                str(RECOVERY_TIMEOUT),
                "-l",
                str(self.log),
                "-o",
                options_text,
                "start",
                check=False,
            )
            if started.returncode != 0:
                self._raise_failure("the restored cluster did not start")
            self._wait_for_promotion()
        except BaseException:
            self.__exit__()  # stopped, and its temporary log directory removed
            raise
        return self

    @property
    def last_transaction(self) -> str:
        """What the server logged at the end of recovery about the newest transaction replayed."""
        for line in reversed(self._log_lines()):
            if "last completed transaction was at log time" in line:
                return "newest transaction replayed: " + line.rsplit("log time", 1)[-1].strip()
        return "no transaction replayed after the backup"

    def _raise_failure(self, what: str):
        if any(TARGET_NOT_REACHED in line for line in self._log_lines()):
            raise TargetBeyondArchive(f"{what}: {TARGET_NOT_REACHED}")
        raise PitrError(f"{what}: {self._log_tail()}")

    def _wait_for_promotion(self) -> None:
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with connect(self.port) as conn:
                    if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                        return
            except psycopg.OperationalError:
                if not server_running(self.data_dir):
                    self._raise_failure("the restored cluster stopped during recovery")
            time.sleep(0.5)
        raise PitrError(f"recovery did not finish within {RECOVERY_TIMEOUT} s: {self._log_tail()}")

    def _log_lines(self) -> list[str]:
        if hasattr(self, "final_log"):
            return self.final_log
        try:
            return self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def _log_tail(self) -> str:
        lines = self._log_lines()
        if not lines:
            return "(no server log)"
        important = [line for line in lines if "FATAL" in line or "PANIC" in line] or lines[-5:]
        return " | ".join(important[-5:])

    def _stop(self) -> None:
        self._pg_ctl("-m", "fast", "-w", "stop", check=False)

    def __exit__(self, *exc) -> None:
        self._stop()
        self.final_log = self._log_lines()  # for last_transaction, after the log is gone
        shutil.rmtree(self.log.parent, ignore_errors=True)


def drop_recovery_target(data_dir: Path) -> None:
    """Recover to the end of the archive instead: the recovery_target_* lines of pgBackRest's
    postgresql.auto.conf go (restore_command stays), recovery.signal is kept."""
    auto = data_dir / "postgresql.auto.conf"
    kept = [line for line in auto.read_text().splitlines() if not line.startswith("recovery_target")]
    auto.write_text("\n".join(kept) + "\n")
    signal_file = data_dir / "recovery.signal"
    signal_file.touch()
    ids = os_user_ids()
    if ids:
        os.chown(signal_file, *ids)


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'" if any(c in value for c in " '%") else value


def connect(port: int) -> psycopg.Connection:
    return psycopg.connect(
        host="127.0.0.1",
        port=port,
        dbname=settings.DATABASES["default"]["NAME"],
        user=os.environ.get("POSTGRES_USER") or "shop",
        password=settings.PITR_PG_PASSWORD,
        connect_timeout=5,
        autocommit=True,
    )


def read_media_names(port: int) -> set[str]:
    with connect(port) as conn:
        return media.referenced_media_names(conn)

"""PostgreSQL: dump, restore into a new database, and swap databases by renaming.

pg_dump and pg_restore get the connection from settings.DATABASES through libpq's
environment (PGHOST, PGPASSWORD, PGSSLMODE, PGSERVICE, ...), built by Django's own
`DatabaseClient.settings_to_cmd_args_env` (what `manage.py dbshell` uses), so the password
never appears on a command line and every connection option the shop uses reaches them.
Our own connections (the lock, CREATE/RENAME DATABASE, the snapshot) pass the same options.
Database-level work (create, rename, terminate) runs on the maintenance database, because
a database cannot be renamed while anyone, including us, is connected to it.

pg_dump and pg_restore run with a time limit (BACKUP_PG_TIMEOUT): a table locked by another
session would otherwise block them, and the backup or restore waiting on them, forever.

All of it connects as the backup role (settings.BACKUP_DATABASE, from BACKUP_DATABASE_URL;
DATABASE_URL's connection when unset): not a superuser, but with CREATEDB and a member of the
app role (the shop's DATABASE_URL user), so it reads every table for pg_dump, ends the app's
sessions, renames and drops the databases the app role owns, and creates new ones owned by
the app role, into which pg_restore writes as the app role (`--role`).
"""

import contextlib
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from django.conf import settings
from django.db.backends.postgresql.client import DatabaseClient
from psycopg import sql

from shop.backups.errors import BackupError
from shop.backups.files import create_private_file
from shop.backups.manifest import CHUNK_SIZE, HashingWriter

MAX_IDENTIFIER_LENGTH = 63  # PostgreSQL's NAMEDATALEN - 1


def live_database_name() -> str:
    return settings.DATABASES["default"]["NAME"]


# Keys of DATABASES["default"]["OPTIONS"] that are Django's or psycopg's, not libpq's.
NOT_LIBPQ_OPTIONS = {
    "assume_role",
    "isolation_level",
    "pool",
    "server_side_binding",
    "cursor_factory",
    "context",
    "prepare_threshold",
}
# libpq parameters Django's DatabaseClient does not translate, and their environment variables.
EXTRA_LIBPQ_ENV = {
    "options": "PGOPTIONS",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "sslcrl": "PGSSLCRL",
    "sslcompression": "PGSSLCOMPRESSION",
    "gssencmode": "PGGSSENCMODE",
    "channel_binding": "PGCHANNELBINDING",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "hostaddr": "PGHOSTADDR",
    "krbsrvname": "PGKRBSRVNAME",
}


def app_role() -> str | None:
    """The role the shop connects as (DATABASE_URL's user): it owns the shop database and
    everything in it, also after a restore. None when DATABASE_URL names no user (libpq's default)."""
    return settings.DATABASES["default"].get("USER") or None


def _database_settings() -> dict:
    """The backup role's connection settings (BACKUP_DATABASE_URL, else DATABASE_URL's), always
    for the shop's own database name."""
    db = getattr(settings, "BACKUP_DATABASE", None) or settings.DATABASES["default"]
    return {**db, "NAME": live_database_name(), "OPTIONS": dict(db.get("OPTIONS") or {})}


def connection_params(dbname: str) -> dict:
    """psycopg/libpq keyword parameters for `dbname` with every option of DATABASES["default"]:
    host, port, user, password and the libpq OPTIONS (sslmode, sslrootcert, sslcert, sslkey,
    passfile, service, options, ...), as Django's own connection passes them."""
    db = _database_settings()
    params = {key: value for key, value in db["OPTIONS"].items() if key not in NOT_LIBPQ_OPTIONS}
    for key in ("HOST", "PORT", "USER", "PASSWORD"):
        if db.get(key):
            params[key.lower()] = str(db[key])
    params["dbname"] = dbname
    return params


def connect(dbname: str, application_name: str = "shop-backups") -> psycopg.Connection:
    params = {**connection_params(dbname), "application_name": application_name}
    return psycopg.connect(autocommit=True, **params)


def maintenance_connection(application_name: str = "shop-backups") -> psycopg.Connection:
    return connect(settings.BACKUP_MAINTENANCE_DATABASE, application_name)


def libpq_env(dbname: str) -> dict:
    """The environment for pg_dump/pg_restore on `dbname`: the process's own, plus the PG*
    variables Django's `DatabaseClient.settings_to_cmd_args_env` derives from the settings
    (password, service, sslmode, sslrootcert, sslcert, sslkey, passfile), plus host, port and
    user (which it passes as arguments), plus the libpq options it does not cover."""
    db = _database_settings()
    _, client_env = DatabaseClient.settings_to_cmd_args_env(db, [])
    env = dict(os.environ)
    env.update(client_env or {})
    for key, variable in (("HOST", "PGHOST"), ("PORT", "PGPORT"), ("USER", "PGUSER")):
        if db.get(key):
            env[variable] = str(db[key])
    for key, variable in EXTRA_LIBPQ_ENV.items():
        if db["OPTIONS"].get(key) not in (None, ""):
            env[variable] = str(db["OPTIONS"][key])
    env["PGDATABASE"] = dbname
    env["PGAPPNAME"] = "shop-backups"
    return env


def tool_version(tool: str) -> str:
    """'15.20' from `pg_dump --version` ('pg_dump (PostgreSQL) 15.20 (Debian ...)')."""
    return started_tool_version(tool)()


def started_tool_version(tool: str):
    """Start `tool --version` and return a function that waits for it and gives tool_version's
    answer: the caller does something else meanwhile (it takes ~0.05 s, as long as connecting)."""
    try:
        process = subprocess.Popen([tool, "--version"], stdout=subprocess.PIPE, text=True)
    except FileNotFoundError:
        raise BackupError(f"{tool} is not installed: install the PostgreSQL client tools.") from None

    def version() -> str:
        output = process.communicate()[0]
        match = re.search(r"\) (\d+(?:\.\d+)?)", output)
        if process.returncode != 0 or not match:
            raise BackupError(f"cannot read the version of {tool} from {output!r}")
        return match.group(1)

    return version


def major(version: str) -> int:
    return int(version.split(".")[0])


def server_version(conn: psycopg.Connection) -> str:
    return conn.execute("SHOW server_version").fetchone()[0].split()[0]


def table_row_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Rows of every ordinary table outside the system schemas, by 'schema.table'."""
    tables = conn.execute(
        """
        SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
        ORDER BY 1, 2
        """
    ).fetchall()
    counts = {}
    for schema, table in tables:
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
        counts[f"{schema}.{table}"] = conn.execute(query).fetchone()[0]
    return counts


def migration_state(conn: psycopg.Connection) -> dict[str, list[str]]:
    state: dict[str, list[str]] = {}
    for app, name in conn.execute("SELECT app, name FROM django_migrations ORDER BY id"):
        state.setdefault(app, []).append(name)
    return state


@dataclass
class Snapshot:
    """A consistent view of the shop database, shared by pg_dump and our own queries."""

    id: str
    conn: psycopg.Connection
    server_version: str
    pg_dump_version: str


@contextlib.contextmanager
def exported_snapshot():
    """A REPEATABLE READ transaction whose snapshot pg_dump imports (`--snapshot`), so row
    counts, migration state and upload names read here describe exactly the data in the dump.
    The transaction stays open (read-only, no locks beyond pg_dump's own) until the block ends."""
    pg_dump_version = started_tool_version("pg_dump")  # runs while we connect
    with connect(live_database_name()) as conn:
        conn.autocommit = False
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        # Our own queries in the snapshot wait for table locks like pg_dump does: same limit.
        conn.execute("SELECT set_config('statement_timeout', %s, false)", [f"{pg_timeout() * 1000:.0f}"])
        snapshot_id = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        yield Snapshot(snapshot_id, conn, server_version(conn), pg_dump_version())
        conn.rollback()


def pg_timeout() -> float:
    """Seconds pg_dump or pg_restore may run (BACKUP_PG_TIMEOUT); 0 means no limit."""
    return float(settings.BACKUP_PG_TIMEOUT)


def timeout_error(what: str, timeout: float) -> BackupError:
    return BackupError(
        f"{what} did not finish within {timeout:g} s (BACKUP_PG_TIMEOUT) and was stopped. "
        "Most likely another session holds a lock on a table (look at pg_locks and "
        "pg_stat_activity); if the database has simply grown, raise BACKUP_PG_TIMEOUT."
    )


AUTO_COMPRESSION = "zstd:1"  # measured: smaller and faster than pg_dump's default gzip, and than zstd:3
# pg_dump 15 and older: gzip level 1. Measured on 50k order lines: 0.21-0.29 s against 0.58-0.78 s
# for the default level (6), the dump 14 % larger; most of a daily backup's own time was this.
AUTO_COMPRESSION_BEFORE_16 = "1"
METHODS_SINCE_16 = ("zstd", "lz4", "none")  # pg_dump 15 and older take only a gzip level 0-9


def dump_compression(pg_dump_version: str, setting: str | None = None) -> str | None:
    """The value of pg_dump's --compress for BACKUP_DUMP_COMPRESSION (None: pass none, pg_dump's
    default). A method this pg_dump does not have is an error, not silently something else."""
    setting = (setting if setting is not None else settings.BACKUP_DUMP_COMPRESSION).strip().lower()
    if setting in ("", "default"):
        return None
    if setting == "auto":
        return AUTO_COMPRESSION if major(pg_dump_version) >= 16 else AUTO_COMPRESSION_BEFORE_16
    if major(pg_dump_version) < 16 and setting.split(":")[0] in (*METHODS_SINCE_16, "gzip"):
        raise BackupError(
            f"BACKUP_DUMP_COMPRESSION={setting} needs pg_dump 16 or later, and this one is "
            f"{pg_dump_version}: set it to auto or default (or a gzip level 0-9), or install newer "
            "PostgreSQL client tools."
        )
    return setting


def dump_snapshot(
    snapshot_id: str, out_path: Path, started=None, compression: str | None = None
) -> tuple[str, int]:
    """Stream `pg_dump --format=custom` of the snapshot into out_path; (SHA-256, size).

    Uses no Django or psycopg connection, so it can run in a thread beside the uploads archive;
    `started(process)` is called with the pg_dump process, so that thread's caller can stop it.
    `compression` is pg_dump's --compress (see dump_compression); None leaves its default.
    """
    command = ["pg_dump", "--format=custom", "--no-password", f"--snapshot={snapshot_id}"]
    if compression is not None:
        command.append(f"--compress={compression}")
    with create_private_file(out_path) as raw, HashingWriter(raw) as writer:
        _run_streaming(command, libpq_env(live_database_name()), writer, started)
        raw.flush()
        os.fsync(raw.fileno())
    return writer.hexdigest(), writer.size


class _Watchdog:
    """Kills a process group when its time is up; `fired` says whether it did."""

    def __init__(self, process: subprocess.Popen, timeout: float):
        self.process, self.fired = process, False
        self._timer = threading.Timer(timeout, self._expire) if timeout > 0 else None
        if self._timer:
            self._timer.daemon = True
            self._timer.start()

    def _expire(self) -> None:
        self.fired = True
        kill_process_group(self.process)

    def cancel(self) -> None:
        if self._timer:
            self._timer.cancel()


def kill_process_group(process: subprocess.Popen) -> None:
    """SIGKILL the tool and every worker it forked (pg_restore --jobs)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _run_streaming(command: list[str], env: dict, writer: HashingWriter, started=None) -> None:
    # stderr goes to a file: a pipe nobody reads could fill up and stall pg_dump.
    # A session of its own, so a timeout can kill it with everything it started.
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=errors, env=env, start_new_session=True
        )
        watchdog = _Watchdog(process, pg_timeout())
        if started:
            started(process)
        try:
            while chunk := process.stdout.read(CHUNK_SIZE):
                writer.write(chunk)
        except BaseException:
            kill_process_group(process)  # a full disk, a soft time limit, Ctrl-C: pg_dump goes too
            raise
        finally:
            process.stdout.close()
            returncode = process.wait()
            watchdog.cancel()
        if watchdog.fired:
            raise timeout_error(command[0], pg_timeout())
        if returncode != 0:
            errors.seek(0)
            message = errors.read().decode(errors="replace").strip()
            raise BackupError(f"{command[0]} failed (exit {returncode}): {message}")


def run_tool(command: list[str], env: dict) -> None:
    """Run pg_restore (or another libpq tool) to the end, within BACKUP_PG_TIMEOUT."""
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, stdout=output, stderr=output, env=env, start_new_session=True)
        try:
            returncode = process.wait(timeout=pg_timeout() or None)
        except BaseException as exc:
            kill_process_group(process)
            process.wait()
            if isinstance(exc, subprocess.TimeoutExpired):
                raise timeout_error(command[0], pg_timeout()) from None
            raise
        if returncode != 0:
            output.seek(0)
            message = output.read().decode(errors="replace").strip()
            raise BackupError(f"{command[0]} failed (exit {returncode}): {message}")


def database_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def database_size(conn: psycopg.Connection, name: str) -> int | None:
    row = conn.execute("SELECT pg_database_size(datname) FROM pg_database WHERE datname = %s", [name])
    result = row.fetchone()
    return result[0] if result else None


def derived_name(suffix: str) -> str:
    """A database name derived from the shop's, so we only ever create and drop our own."""
    name = f"{live_database_name()}__{suffix}"
    if len(name) > MAX_IDENTIFIER_LENGTH:
        raise BackupError(
            f"the database name {name!r} would exceed PostgreSQL's {MAX_IDENTIFIER_LENGTH} characters; "
            "use a shorter database name."
        )
    return name


SCRATCH_SUFFIXES = ("restoring_", "verify_")  # never "pre_restore_": those are kept for rollback


def drop_scratch_databases() -> list[str]:
    """Drop staging and scratch databases left by a killed restore or verify; call under the lock."""
    patterns = [f"{live_database_name()}__{suffix}" for suffix in SCRATCH_SUFFIXES]
    with maintenance_connection() as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE ANY(%s)",
                [[pattern.replace("_", r"\_") + "%" for pattern in patterns]],
            )
        ]
        for name in names:
            drop_database(conn, name)
    return names


def create_database(conn: psycopg.Connection, name: str) -> None:
    """An empty database owned by the app role (the backup role may create it for the app role,
    being a member), so the shop owns it once it is swapped in."""
    statement = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
    if app_role():
        statement += sql.SQL(" OWNER {}").format(sql.Identifier(app_role()))
    conn.execute(statement)


def drop_database(conn: psycopg.Connection, name: str) -> None:
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# Entries of `pg_restore --list`: "12; 3079 16385 EXTENSION - pg_trgm " and its comment
# "3456; 0 0 COMMENT - EXTENSION pg_trgm ".
TOC_EXTENSION = re.compile(r"^\d+; \d+ \d+ (?:EXTENSION - |COMMENT - EXTENSION )(\S+)")


def restore_dump(dump_path: Path, dbname: str) -> list[str]:
    """pg_restore into an empty database, as the app role (`--role`), so every object is the
    app role's. Returns the extensions left out because only a superuser may create them
    (pg_stat_statements, which database/init creates as the superuser): the app role may
    create trusted ones only (pg_trgm), and the shop needs no other."""
    jobs = max(1, min(4, os.cpu_count() or 1))
    command = [
        "pg_restore",
        "--no-password",
        "--exit-on-error",
        "--no-owner",
        "--no-acl",
        f"--jobs={jobs}",
        f"--dbname={dbname}",
    ]
    if app_role():
        command.append(f"--role={app_role()}")
    with tempfile.TemporaryDirectory(prefix="shop-restore-") as scratch:
        entries = tool_output(["pg_restore", "--list", str(dump_path)], libpq_env(dbname)).splitlines()
        extensions = {match.group(1) for line in entries if (match := TOC_EXTENSION.match(line))}
        skipped = extensions_needing_superuser(sorted(extensions))
        if skipped:
            kept = [line for line in entries if not _names_extension(line, skipped)]
            use_list = Path(scratch) / "restore.list"
            use_list.write_text("\n".join(kept) + "\n")
            command.append(f"--use-list={use_list}")
        run_tool([*command, str(dump_path)], libpq_env(dbname))
    return skipped


def _names_extension(toc_line: str, names: list[str]) -> bool:
    match = TOC_EXTENSION.match(toc_line)
    return bool(match) and match.group(1) in names


def tool_output(command: list[str], env: dict) -> str:
    """The output of a quick libpq tool run (pg_restore --list), within BACKUP_PG_TIMEOUT."""
    try:
        result = subprocess.run(
            command, env=env, capture_output=True, text=True, check=False, timeout=pg_timeout() or None
        )
    except subprocess.TimeoutExpired:
        raise timeout_error(command[0], pg_timeout()) from None
    if result.returncode != 0:
        raise BackupError(f"{command[0]} failed (exit {result.returncode}): {result.stderr.strip()}")
    return result.stdout


def extensions_needing_superuser(names: list[str]) -> list[str]:
    """Those of `names` the restoring role (the app role, else the backup role) may not create:
    neither superuser nor trusted (their default version). Unknown ones are kept, so pg_restore
    says clearly that the server lacks them."""
    if not names:
        return []
    try:
        conn = maintenance_connection()
    except psycopg.OperationalError:
        return []  # pg_restore, which connects next, says why the server cannot be reached
    with conn:
        role = app_role() or conn.execute("SELECT current_user").fetchone()[0]
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [role]).fetchone()
        if row is None or row[0]:
            return []
        rows = conn.execute(
            """
            SELECT v.name FROM pg_available_extension_versions v
            JOIN pg_available_extensions e ON e.name = v.name AND e.default_version = v.version
            WHERE v.name = ANY(%s) AND v.superuser AND NOT v.trusted ORDER BY 1
            """,
            [names],
        )
        return [name for (name,) in rows]


def check_row_counts(dbname: str, expected: dict[str, int]) -> None:
    with connect(dbname) as conn:
        actual = table_row_counts(conn)
    if actual != expected:
        differences = [
            f"{table}: {expected.get(table, 'absent')} in the manifest, "
            f"{actual.get(table, 'absent')} restored"
            for table in sorted(set(actual) | set(expected))
            if actual.get(table) != expected.get(table)
        ]
        raise BackupError("the restored row counts differ from the manifest: " + "; ".join(differences))


def _terminate_sessions(conn: psycopg.Connection, name: str) -> None:
    """End the sessions on `name` this role may end: its own roles' (the app's, as a member of
    it), not a superuser's (pg_terminate_backend would raise an error). Background workers
    (autovacuum) have no role: the rename itself stops those."""
    conn.execute(
        """
        SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a JOIN pg_roles r ON r.oid = a.usesysid
        WHERE a.datname = %s AND a.pid <> pg_backend_pid() AND pg_has_role(r.oid, 'USAGE')
          AND (NOT r.rolsuper OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user))
        """,
        [name],
    )


def _remaining_sessions(conn: psycopg.Connection, name: str) -> str:
    rows = conn.execute(
        "SELECT coalesce(usename, backend_type), pid, application_name FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid() ORDER BY pid",
        [name],
    ).fetchall()
    return ", ".join(f"user {user} (pid {pid}{f', {app}' if app else ''})" for user, pid, app in rows)


def _rename(conn: psycopg.Connection, old: str, new: str, timeout: float = 15.0) -> None:
    # A terminated session needs a moment to go away; until then the rename is refused.
    deadline = time.monotonic() + timeout
    statement = sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new))
    while True:
        _terminate_sessions(conn, old)
        try:
            conn.execute(statement)
            return
        except psycopg.errors.ObjectInUse:
            if time.monotonic() > deadline:
                raise BackupError(
                    f"database {old} is still in use by sessions the backup role may not end: "
                    f"{_remaining_sessions(conn, old) or 'none left now'}. Close them (or end them as "
                    "a superuser) and run the restore again."
                ) from None
            time.sleep(0.1)


def _allow_connections(conn: psycopg.Connection, name: str, allow: bool) -> None:
    conn.execute(
        sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
            sql.Identifier(name), sql.Literal(allow)
        )
    )


class DatabaseSwap:
    """Put `replacement` in place of `live`, keeping the old one as `previous`; and undo that.

    `step` records how far it got, so `undo()` reverses exactly what was done, also when the
    swap failed between its two renames. New connections to the database being renamed are
    refused while its sessions are terminated, so none can slip in before the rename. Every
    step is reported to `on_step` (the restore journal), and a swap a killed process left
    halfway is picked up again from the databases that exist (`resumed`).
    """

    def __init__(self, live: str, replacement: str, previous: str, on_step=None):
        self.live, self.replacement, self.previous = live, replacement, previous
        self.on_step = on_step or (lambda step, **data: None)
        self.had_live: bool | None = None  # on a new server after a disaster there is none
        self.step = (
            "not started"  # -> "live moved aside" -> "swapped"; undo: -> "restored moved aside" -> "undone"
        )

    @classmethod
    def resumed(cls, live: str, replacement: str, previous: str, had_live: bool | None, on_step=None):
        """The swap as a killed process left it. `had_live` is what it recorded when it started
        (None: it never started), so the step follows from which of the three databases exist."""
        swap = cls(live, replacement, previous, on_step)
        swap.had_live = had_live
        with maintenance_connection("shop-backups: restore recovery") as conn:
            exists = {name: database_exists(conn, name) for name in (live, replacement, previous)}
        if had_live is None:
            return swap
        if had_live and exists[previous] and not exists[live]:
            swap.step = "live moved aside"  # the staged copy may be gone too (a verify dropped it)
        elif exists[live] and not exists[replacement] and (exists[previous] or not had_live):
            swap.step = "swapped"
        elif had_live and not exists[live]:
            raise BackupError(
                f"neither {live} nor its previous copy {previous} exists: the interrupted restore cannot "
                "be finished or undone automatically. Look at the databases (psql -l) and rename by hand."
            )
        return swap

    def run(self) -> None:
        """Swap, or finish a swap a killed process left halfway (see `resumed`)."""
        with maintenance_connection("shop-backups: restore swap") as conn:
            if self.step == "not started":
                self.had_live = database_exists(conn, self.live)
                self.on_step("db-swap-started", had_live=self.had_live)
                if self.had_live:
                    self._move_live_aside(conn)
            if self.step != "swapped":
                _rename(conn, self.replacement, self.live)
                self.step = "swapped"
                self.on_step("db-swapped")

    def _move_live_aside(self, conn: psycopg.Connection) -> None:
        _allow_connections(conn, self.live, False)
        try:
            _rename(conn, self.live, self.previous)
        finally:  # the live database accepts connections again under whichever name it now has
            name = self.live if database_exists(conn, self.live) else self.previous
            _allow_connections(conn, name, True)
        self.step = "live moved aside"
        self.on_step("db-live-moved-aside")

    def allow_connections(self) -> None:
        """After a killed swap: the live and previous databases accept connections again (a
        process killed between refusing them and renaming leaves them refused)."""
        with maintenance_connection("shop-backups: restore recovery") as conn:
            for name in (self.live, self.previous):
                if database_exists(conn, name):
                    _allow_connections(conn, name, True)

    def undo(self) -> None:
        """Give `live` its previous database back and drop the restored copy (the set still has it)."""
        with maintenance_connection("shop-backups: restore undo") as conn:
            if self.step == "swapped":
                _allow_connections(conn, self.live, False)
                _rename(conn, self.live, self.replacement)
                self.step = "restored moved aside"
            if self.step in ("live moved aside", "restored moved aside") and self.had_live:
                _rename(conn, self.previous, self.live)
            self.step = "undone"
            drop_database(conn, self.replacement)

    def summary(self, set_id: str, rows: str) -> list[str]:
        """After a complete swap: what was restored, and the commands that roll it back."""
        live, previous = self.live, self.previous
        psql = f"psql -d {settings.BACKUP_MAINTENANCE_DATABASE}"
        restored = f"Restored database {live} from set {set_id} ({rows})."
        if not self.had_live:
            return [restored, f"There was no database {live} before: nothing to roll back to."]
        return [
            restored,
            f"The previous database is kept as {previous}. To roll back, stop the backend and workers, then:",
            f'  {psql} -c \'ALTER DATABASE "{live}" RENAME TO "{live}__restored_{set_id}"\' '
            f'-c \'ALTER DATABASE "{previous}" RENAME TO "{live}"\'',
            f"When satisfied, drop the old one: {psql} -c 'DROP DATABASE \"{previous}\"'",
        ]

    def state(self, maintenance_db: str) -> tuple[str, list[str]]:
        """(where the databases are now, the commands that give the live name its previous
        database back), for a message after an undo that failed halfway."""
        psql = f"psql -d {maintenance_db}"
        live, previous, replacement = self.live, self.previous, self.replacement
        if self.step == "swapped" and not self.had_live:
            return f"database {live} is the restored one (there was none before the restore)", []
        if self.step == "swapped":
            where = f"database {live} is the restored one and the previous one is {previous}"
            commands = [f'{psql} -c \'ALTER DATABASE "{live}" RENAME TO "{replacement}"\'']
        elif self.step in ("live moved aside", "restored moved aside") and self.had_live:
            where = f"there is no database {live}; the previous one is {previous}"
            commands = []
        else:
            return f"database {live} is as before the restore", []
        if self.had_live:
            commands.append(f'{psql} -c \'ALTER DATABASE "{previous}" RENAME TO "{live}"\'')
            commands.append(f"{psql} -c 'ALTER DATABASE \"{live}\" WITH ALLOW_CONNECTIONS true'")
        return where, commands

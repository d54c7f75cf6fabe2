"""The shop's stack without Docker: `make run` (`python -m ops.runner`).

Starts, under DATA_PATH, the same topology as docker-compose.yml: a PostgreSQL of its own
(initialised on first start with database/postgresql.conf and database/init), Redis with AOF,
gunicorn, the Celery worker, the backup worker, beat, and nginx rendered from nginx/conf.d,
all on 127.0.0.1 ports away from the machine's 5432/6379. Before starting, it migrates the
database and collects the static files (what the compose `migrate` service does).
supervisord runs the processes from a generated configuration (DATA_PATH/run/supervisord.conf):
it restarts one that dies (with backoff, and gives up on one that keeps failing to start),
stops them in order on Ctrl-C, and `python -m ops.runner ctl ...` (supervisorctl) stops,
starts or shows one.

As root (as on the CI machines), PostgreSQL runs as the `postgres` user, because it refuses
to run as root, and nginx's workers run as an unprivileged user that must be able to reach
DATA_PATH.
"""

import argparse
import grp
import os
import pwd
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Collection
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from ops import init_stack, nginx_config
from shop.backups.pitr import config as pitr_config
from shop.backups.pitr import switch as pitr_switch

PROJECT_ROOT = Path(__file__).resolve().parent.parent
POSTGRES_CONF = PROJECT_ROOT / "database" / "postgresql.conf"
POSTGRES_INIT_DIR = PROJECT_ROOT / "database" / "init"
REDIS_CONF = PROJECT_ROOT / "redis" / "redis.conf"
ENTRYPOINT = PROJECT_ROOT / "ops" / "entrypoint.sh"

DEFAULT_PORTS = {
    "RUNNER_HTTP_PORT": 18080,
    "RUNNER_APP_PORT": 18000,
    "RUNNER_POSTGRES_PORT": 18432,
    "RUNNER_REDIS_PORT": 18379,
}
PROCESS_NAMES = ("postgres", "redis", "web", "worker", "backup", "beat", "nginx")
REQUIRED_SECRETS = (
    "POSTGRES_PASSWORD",
    "APP_DB_PASSWORD",
    "BACKUP_DB_PASSWORD",
    "REDIS_PASSWORD",
    "DJANGO_SECRET_KEY",
)

INSTALL_HINTS = {
    "postgres": "the PostgreSQL server (Debian/Ubuntu: `sudo apt-get install postgresql`; "
    "macOS: `brew install postgresql@17`; Fedora: `sudo dnf install postgresql-server`)",
    "redis-server": "Redis (Debian/Ubuntu: `sudo apt-get install redis-server`; macOS: `brew install redis`; "
    "Fedora: `sudo dnf install redis`)",
    "nginx": "nginx (Debian/Ubuntu: `sudo apt-get install nginx-light`; macOS: `brew install nginx`; "
    "Fedora: `sudo dnf install nginx`)",
    "setpriv": "setpriv, to run PostgreSQL as the postgres user "
    "(Debian/Ubuntu: `apt-get install util-linux`)",
}


class RunnerError(Exception):
    """Something the user must fix; the message says what."""


def running_as_root() -> bool:
    return os.geteuid() == 0


# --- configuration -----------------------------------------------------------------------


@dataclass(frozen=True)
class RunnerConfig:
    data: Path
    backups: Path
    http_port: int
    app_port: int
    postgres_port: int
    redis_port: int
    postgres_user: str
    postgres_password: str
    postgres_db: str
    redis_password: str
    secret_key: str
    # The shop's roles (database/init/02-roles.sh): the app's, and the backup role, given only
    # to the backup worker and `manage` (backup and restore commands).
    app_db_user: str
    app_db_password: str
    backup_db_user: str
    backup_db_password: str
    # How many gunicorns behind nginx (RUNNER_BACKENDS), on RUNNER_APP_PORT and the ports after it.
    backends: int = 1
    # The environment with .env filled in: passed on to the shop's processes.
    environ: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> "RunnerConfig":
        """From the environment, completed by .env unless DJANGO_READ_DOT_ENV is false."""
        values = dict(os.environ if environ is None else environ)
        dot_env = PROJECT_ROOT / ".env"
        read_dot_env = values.get("DJANGO_READ_DOT_ENV", "true").lower() not in ("false", "0", "no")
        if read_dot_env and dot_env.is_file():
            values = {**init_stack.read_env_file(dot_env), **values}
        missing = [name for name in REQUIRED_SECRETS if not values.get(name)]
        if missing:
            raise RunnerError(
                f"{', '.join(missing)} not set. Run `make init` to create .env with fresh secrets, "
                "or set them in the environment (an .env from before them: add each with a random "
                "value, e.g. from `python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`)."
            )
        ports = {name: int(values.get(name) or default) for name, default in DEFAULT_PORTS.items()}
        backends = int(values.get("RUNNER_BACKENDS") or 1)
        if backends < 1:
            raise RunnerError(f"RUNNER_BACKENDS={backends}: the shop needs at least one backend.")
        if backends > 1 and values.get("MEDIA_STORAGE", "local") != "s3":
            raise RunnerError(
                f"RUNNER_BACKENDS={backends} needs MEDIA_STORAGE=s3: several backends share the "
                'product images through the media bucket (README "Scaling out").'
            )
        return cls(
            data=init_stack.resolve(values.get("DATA_PATH") or "./data"),
            backups=init_stack.resolve(values.get("BACKUP_PATH") or "./backups"),
            http_port=ports["RUNNER_HTTP_PORT"],
            app_port=ports["RUNNER_APP_PORT"],
            postgres_port=ports["RUNNER_POSTGRES_PORT"],
            redis_port=ports["RUNNER_REDIS_PORT"],
            postgres_user=values.get("POSTGRES_USER") or "shop",
            postgres_password=values["POSTGRES_PASSWORD"],
            postgres_db=values.get("POSTGRES_DB") or "shop",
            redis_password=values["REDIS_PASSWORD"],
            secret_key=values["DJANGO_SECRET_KEY"],
            app_db_user=values.get("APP_DB_USER") or "shop_app",
            app_db_password=values["APP_DB_PASSWORD"],
            backup_db_user=values.get("BACKUP_DB_USER") or "shop_backup",
            backup_db_password=values["BACKUP_DB_PASSWORD"],
            backends=backends,
            environ=values,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/"

    @property
    def backend_addresses(self) -> list[str]:
        """Where each gunicorn listens: RUNNER_APP_PORT, then the next ports."""
        return [f"127.0.0.1:{self.app_port + index}" for index in range(self.backends)]

    @property
    def run_dir(self) -> Path:
        """Generated files: supervisord's and nginx's configuration, sockets, pid and temporary files."""
        return self.data / "run"

    @property
    def postgres_dir(self) -> Path:
        return self.data / "postgres"

    @property
    def static_dir(self) -> Path:
        """frontend_build in Docker: rebuilt by collectstatic at every start."""
        return self.data / "static"

    @property
    def postgres_conf(self) -> Path:
        """A copy of database/postgresql.conf that the postgres user can read wherever the
        project is (a checkout under /root is closed to it)."""
        return self.run_dir / "postgresql.conf"

    @property
    def beat_dir(self) -> Path:
        return self.data / "beat"

    @property
    def pitr_enabled(self) -> bool:
        """PITR_ENABLED: WAL archiving and physical backups with pgBackRest (README "Point-in-time
        recovery"). Off unless set: the archive settings are given to PostgreSQL only with it."""
        return pitr_config.as_bool(self.environ.get("PITR_ENABLED"))

    @property
    def pitr_dir(self) -> Path:
        """pgBackRest's configuration, lock and spool directories and PostgreSQL's socket for it."""
        return self.run_dir / "pgbackrest"

    @property
    def pitr_config_file(self) -> Path:
        return self.pitr_dir / "pgbackrest.conf"

    def pitr(self) -> pitr_config.PitrConfig:
        return pitr_config.PitrConfig.from_environ(
            self.environ,
            pg_data=self.postgres_dir,
            pg_port=self.postgres_port,
            pg_socket_dir=self.pitr_dir / "socket",
            run_dir=self.pitr_dir,
            log_dir=self.data / "logs" / "pgbackrest",
            backup_path=self.backups,
        )

    def database_url(self, user: str | None = None, password: str | None = None) -> str:
        """The shop database as the app role (or as `user`)."""
        user = quote(user or self.app_db_user, safe="")
        password = quote(password or self.app_db_password, safe="")
        return f"postgres://{user}:{password}@127.0.0.1:{self.postgres_port}/{self.postgres_db}"

    def backup_database_url(self) -> str:
        return self.database_url(self.backup_db_user, self.backup_db_password)

    def init_script_environment(self, programs: "Programs") -> dict[str, str]:
        """What database/init/*.sh read, as in the postgres image, plus libpq's way to the
        server (TCP on 127.0.0.1) as the superuser."""
        return {
            **os.environ,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.postgres_port),
            "PGPASSWORD": self.postgres_password,
            "PSQL": programs.psql,
            "POSTGRES_USER": self.postgres_user,
            "POSTGRES_DB": self.postgres_db,
            "APP_DB_USER": self.app_db_user,
            "APP_DB_PASSWORD": self.app_db_password,
            "BACKUP_DB_USER": self.backup_db_user,
            "BACKUP_DB_PASSWORD": self.backup_db_password,
        }

    def app_environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of the shop's processes: production settings on local services."""
        env = dict(self.environ if base is None else base)
        # A broker URL or eager mode from the caller (pytest sets one) would bypass our Redis.
        env.pop("CELERY_BROKER_URL", None)
        # The backup role only where backup_environment() gives it.
        env.pop("BACKUP_DATABASE_URL", None)
        # Each gunicorn (RUNNER_BACKENDS) derives a metrics directory of its own from its address
        # (ops/gunicorn.conf.py) and empties it at start: one inherited directory would be shared.
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(
            DATA_PATH=str(self.data),
            BACKUP_PATH=str(self.backups),
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            DJANGO_READ_DOT_ENV="false",
            DJANGO_SETTINGS_MODULE="shop.settings",
            DJANGO_DEBUG="false",
            DJANGO_SECRET_KEY=self.secret_key,
            DJANGO_ALLOWED_HOSTS="localhost,127.0.0.1",
            # Plain HTTP on loopback: no redirect to HTTPS, cookies without the Secure flag.
            DJANGO_SECURE_SSL_REDIRECT="false",
            DJANGO_SECURE_COOKIES="false",
            DATABASE_URL=self.database_url(),
            REDIS_URL=f"redis://:{quote(self.redis_password, safe='')}@127.0.0.1:{self.redis_port}",
            REDIS_PASSWORD=self.redis_password,
            CELERY_TASK_ALWAYS_EAGER="false",
            MEDIA_ROOT=str(self.data / "uploads"),
            STATIC_ROOT=str(self.static_dir),
            LOG_DIR=str(self.data / "logs"),
            CELERY_BEAT_SCHEDULE_FILE=str(self.beat_dir / "celerybeat-schedule"),
            GUNICORN_BIND=f"127.0.0.1:{self.app_port}",
            GUNICORN_CONTROL_SOCKET=str(self.run_dir / "gunicorn.ctl"),
            GUNICORN_WORKERS=env.get("GUNICORN_WORKERS") or "2",
            PYTHONUNBUFFERED="1",
        )
        if self.pitr_enabled:
            postgres_bin = find_postgres_bin()
            env.update(
                PITR_PGBACKREST_CONFIG=str(self.pitr_config_file),
                PITR_PG_DATA=str(self.postgres_dir),
                PITR_PG_BIN=str(postgres_bin or ""),
                POSTGRES_USER=self.postgres_user,
                POSTGRES_PASSWORD=self.postgres_password,
            )
        return env

    def backup_environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The backup worker's and `manage`'s: the app's, plus the backup role."""
        return {**self.app_environment(base), "BACKUP_DATABASE_URL": self.backup_database_url()}


# --- programs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Programs:
    postgres_bin: Path  # the directory with initdb, pg_ctl, postgres
    psql: str
    redis_server: str
    nginx: str
    setpriv: str | None


def find_postgres_bin() -> Path | None:
    """The newest PostgreSQL server installation: Debian's layout, PATH, Homebrew."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    candidates.reverse()
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for brew in ("/opt/homebrew/opt", "/usr/local/opt"):
        candidates.extend(sorted(Path(brew).glob("postgresql@*/bin"), reverse=True))
    for directory in candidates:
        if all((directory / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


def find_programs() -> Programs:
    postgres_bin = find_postgres_bin()
    found = {
        "postgres": postgres_bin,
        "redis-server": shutil.which("redis-server"),
        "nginx": nginx_config.find_nginx(),
        "setpriv": shutil.which("setpriv") if running_as_root() else "not needed",
    }
    missing = [name for name, path in found.items() if not path]
    if missing:
        raise RunnerError(
            "The Docker-less runner needs programs that are not installed:\n"
            + "\n".join(f"  - {INSTALL_HINTS[name]}" for name in missing)
        )
    psql = postgres_bin / "psql"
    return Programs(
        postgres_bin=postgres_bin,
        psql=str(psql) if psql.is_file() else (shutil.which("psql") or "psql"),
        redis_server=found["redis-server"],
        nginx=found["nginx"],
        setpriv=shutil.which("setpriv") if running_as_root() else None,
    )


def as_postgres_user(programs: Programs, command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root. setpriv (unlike runuser) execs the command itself,
    so a signal from supervisord reaches the server directly and it can shut down cleanly."""
    if not running_as_root():
        return command
    return [programs.setpriv, "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *command]


def nginx_worker_user() -> str | None:
    """As root, nginx's workers need an unprivileged user (and its group) that exists here."""
    if not running_as_root():
        return None
    for name in ("www-data", "nginx", "nobody"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        return f"{name} {grp.getgrgid(user.pw_gid).gr_name}"
    raise RunnerError("No unprivileged user (www-data, nginx or nobody) for nginx's workers.")


def ensure_reachable_by_others(path: Path, who: str) -> None:
    """Another user (postgres, nginx's workers) must be able to walk down to `path`."""
    for directory in [path, *path.parents]:
        if directory.is_dir() and not directory.stat().st_mode & stat.S_IXOTH:
            raise RunnerError(
                f"{who} cannot reach {path}: {directory} is not searchable by other users. "
                f"Run `chmod o+x {directory}` or choose a DATA_PATH outside it."
            )


# --- PostgreSQL ------------------------------------------------------------------------------


def postgres_options(config: RunnerConfig, archive: bool = True) -> list[str]:
    """database/postgresql.conf, with this machine's address and port; TCP only, but for a
    private socket for pgBackRest and (unless not `archive`) WAL archiving when PITR is on."""
    options = [
        "-c",
        f"config_file={config.postgres_conf}",
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        f"port={config.postgres_port}",
        "-c",
        f"unix_socket_directories={config.pitr().pg_socket_dir if config.pitr_enabled else ''}",
    ]
    if config.pitr_enabled and not archive:
        options += ["-c", "archive_mode=off"]  # the archive settings are in the configuration file
    return options


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=True, **kwargs)


def give_to_postgres(path: Path) -> None:
    if running_as_root():
        user = pwd.getpwnam("postgres")
        os.chown(path, user.pw_uid, user.pw_gid)


@contextmanager
def temporary_postgres(config: RunnerConfig, programs: Programs, data_dir: Path, archive: bool = True):
    """The server, started in the background for bootstrap work, stopped afterwards."""
    pg_ctl = str(programs.postgres_bin / "pg_ctl")
    options = shlex.join(postgres_options(config, archive))
    run(as_postgres_user(programs, [pg_ctl, "-D", str(data_dir), "-w", "-t", "60", "-o", options, "start"]))
    try:
        yield
    finally:
        run(as_postgres_user(programs, [pg_ctl, "-D", str(data_dir), "-m", "fast", "-w", "stop"]))


def psql(config: RunnerConfig, programs: Programs, database: str, *args: str, **kwargs) -> None:
    command = [programs.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"]
    command += ["-p", str(config.postgres_port), "-U", config.postgres_user, "-d", database, *args]
    run(command, env={**os.environ, "PGPASSWORD": config.postgres_password}, text=True, **kwargs)


def run_init_script(config: RunnerConfig, programs: Programs, script: Path) -> None:
    """A database/init script as the postgres image runs it: *.sql with psql as the superuser
    in POSTGRES_DB, *.sh with its environment (POSTGRES_*, APP_DB_*, BACKUP_DB_*)."""
    if script.suffix == ".sh":
        run(["bash", str(script)], env=config.init_script_environment(programs))
    else:
        psql(config, programs, config.postgres_db, "-f", str(script))


def initialize_postgres(config: RunnerConfig, programs: Programs) -> bool:
    """initdb, the database and database/init/*.sql, on first start only (like the postgres image).

    The cluster is built in a staging directory and renamed into place only when every step
    succeeded, so a failed first start is simply tried again from scratch.
    """
    target = config.postgres_dir
    if (target / "PG_VERSION").exists():
        return False
    if target.exists() and any(target.iterdir()):
        raise RunnerError(f"{target} is not empty but holds no PostgreSQL cluster: move it away first.")
    staging = config.data / "postgres.initializing"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    give_to_postgres(staging)
    # initdb (as postgres) reads the password from a file only it and we can read.
    fd, name = tempfile.mkstemp(prefix="shop-initdb-")
    password_file = Path(name)
    with os.fdopen(fd, "w") as out:
        out.write(config.postgres_password + "\n")
    give_to_postgres(password_file)
    try:
        initdb = str(programs.postgres_bin / "initdb")
        command = [initdb, "-D", str(staging), "--username", config.postgres_user]
        command += ["--pwfile", str(password_file), "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale"]
        run(as_postgres_user(programs, command), stdout=subprocess.DEVNULL)
    finally:
        password_file.unlink()
    # Not archived: the stanza is made on the finished cluster (release()), which is backed up then.
    with temporary_postgres(config, programs, staging, archive=False):
        if config.postgres_db != "postgres":
            create = 'CREATE DATABASE :"db";'
            psql(config, programs, "postgres", "-v", f"db={config.postgres_db}", input=create)
        for script in sorted(POSTGRES_INIT_DIR.iterdir()):
            if script.suffix not in (".sql", ".sh"):
                raise RunnerError(f"{script}: the runner runs only *.sql and *.sh init scripts.")
            run_init_script(config, programs, script)
    if target.exists():
        target.rmdir()  # the empty directory `make init` created
    staging.rename(target)
    return True


# --- the rest of the stack -----------------------------------------------------------------


def prepare_directories(config: RunnerConfig) -> None:
    init_stack.create_data_dirs(config.data, config.backups)
    for directory in (config.run_dir, config.static_dir, config.beat_dir):
        directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(POSTGRES_CONF, config.postgres_conf)
    if config.pitr_enabled:
        # In the file, not on the command line: supervisord cannot take the '%p' of archive_command.
        settings = pitr_config.archive_settings(
            config.pitr_config_file, config.postgres_dir, config.pitr().archive_timeout
        )
        with config.postgres_conf.open("a") as conf:
            conf.write("\n# Point-in-time recovery (PITR_ENABLED), added by ops/runner.py\n")
            conf.write(pitr_config.conf_lines(settings))
    config.postgres_conf.chmod(0o644)
    if running_as_root():
        ensure_reachable_by_others(config.postgres_conf, "PostgreSQL (user postgres)")
        ensure_reachable_by_others(config.static_dir, "nginx's workers")
        ensure_reachable_by_others(config.data / "uploads", "nginx's workers")


def release(config: RunnerConfig, programs: Programs) -> None:
    """Migrations and collectstatic, as the compose `migrate` service does before the backend."""
    with temporary_postgres(config, programs, config.postgres_dir):
        # The roles at every start (idempotent): a cluster made before them gets them, and the
        # passwords follow .env.
        run_init_script(config, programs, POSTGRES_INIT_DIR / "02-roles.sh")
        run([str(ENTRYPOINT), "migrate"], env=config.app_environment(), cwd=PROJECT_ROOT)
        if config.pitr_enabled:
            start_pitr(config)


# --- point-in-time recovery (pgBackRest) ----------------------------------------------------


def prepare_pitr(config: RunnerConfig) -> None:
    """pgBackRest's directories (the postgres user's: archive-push runs as PostgreSQL) and its
    configuration, rewritten at every start from the settings."""
    if not shutil.which("pgbackrest"):
        raise RunnerError(
            "PITR_ENABLED is on but pgBackRest is not installed (Debian/Ubuntu: `sudo apt-get install "
            "pgbackrest`; macOS: `brew install pgbackrest`), or set PITR_ENABLED=false."
        )
    try:
        text = pitr_config.config_text(config.pitr())
    except ValueError as error:
        raise RunnerError(str(error)) from None
    make_pitr_directories(config)
    fd = os.open(config.pitr_config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)  # holds the S3 keys when S3 is configured
    give_to_postgres(config.pitr_config_file)


def make_pitr_directories(config: RunnerConfig) -> None:
    """repo1 (BACKUP_PATH/pgbackrest), the lock, spool and log directories: the postgres user's."""
    for directory in config.pitr().directories():
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        give_to_postgres(directory)
    if running_as_root():
        # The repository is BACKUP_PATH/pgbackrest: the postgres user must get through BACKUP_PATH.
        group = pwd.getpwnam("postgres").pw_gid
        os.chown(config.backups, -1, group)
        ensure_reachable_by_others(config.backups.parent, "pgBackRest (user postgres)")


def start_pitr(config: RunnerConfig) -> None:
    """`manage.py pitr_backup --missing`: stanza-create (idempotent), and a first full backup to
    each repository that has none, so the archive can be restored from the first minute on
    (recorded as the last physical backup, as the scheduled ones are)."""
    backup = [sys.executable, str(PROJECT_ROOT / "manage.py"), "pitr_backup", "--type=full", "--missing"]
    try:
        environment = {**config.app_environment(), "LOG_LEVEL": "WARNING"}  # its error, not Django's start
        done = run(backup, env=environment, cwd=PROJECT_ROOT, capture_output=True, text=True)
    except subprocess.CalledProcessError as error:
        raise RunnerError(
            f"{(error.stderr or '').strip()}\n"
            f"pgBackRest's log: {config.pitr().log_dir}. Fix it or set PITR_ENABLED=false."
        ) from None
    print(f"PITR: {done.stdout.strip()}", flush=True)


def write_nginx_config(config: RunnerConfig, programs: Programs) -> Path:
    prefix = config.run_dir / "nginx"
    first_backend, *more_backends = config.backend_addresses
    site = nginx_config.NginxSite(
        listen=f"127.0.0.1:{config.http_port}",
        backend=first_backend,
        extra_backends=tuple(more_backends),
        static_root=config.static_dir,
        media_root=config.data / "uploads",
        log_dir=config.data / "nginx-logs",
        **media_site(config.environ),
    )
    error_log = config.data / "nginx-logs" / "error.log"
    main = nginx_config.write_config(site, prefix, programs.nginx, nginx_worker_user(), error_log)
    try:
        nginx_config.check_config(programs.nginx, prefix, main)
    except subprocess.CalledProcessError as error:
        raise RunnerError(f"nginx -t failed on {main}:\n{error.stderr}") from None
    return main


def media_site(environ: dict[str, str]) -> dict[str, str]:
    """nginx's /media/: the uploads directory, or (MEDIA_STORAGE=s3) the media bucket's prefix."""
    if environ.get("MEDIA_STORAGE", "local") != "s3":
        return {"media_storage": "local"}
    bucket = environ.get("MEDIA_S3_BUCKET") or ""
    if not bucket:
        raise RunnerError("MEDIA_STORAGE=s3 needs MEDIA_S3_BUCKET: the bucket that holds the product images.")
    # MEDIA_S3_NGINX_URL: where nginx reaches the prefix, when that is not the shop's endpoint.
    url = environ.get("MEDIA_S3_NGINX_URL") or nginx_config.media_s3_url(
        environ.get("MEDIA_S3_ENDPOINT_URL"),
        bucket,
        environ.get("MEDIA_S3_PREFIX", "media"),
        environ.get("MEDIA_S3_REGION") or "us-east-1",
    )
    return {"media_storage": "s3", "media_bucket_url": url}


@dataclass(frozen=True)
class Program:
    """One process of the stack and how supervisord starts, restarts and stops it."""

    command: list[str]
    priority: int  # supervisord starts the lowest first and stops it last
    stop_signal: str
    stop_wait_seconds: int  # then SIGKILL to the process group
    start_seconds: int  # running this long counts as started; an earlier exit is a failed start
    environment: dict[str, str] = field(default_factory=dict)  # on top of supervisord's own


# A failed start is tried again after 1, 2, ... START_RETRIES seconds (supervisord's backoff),
# then the process is given up on (FATAL) and the others keep running.
START_RETRIES = 5
# supervisord stops one group after the other; the app's processes form one group, so they stop
# together (after nginx, before Redis and PostgreSQL). supervisorctl calls them app:web, ...
APP_GROUP = "app"
APP_PROCESSES = ("web", "worker", "backup", "beat")


def process_kind(name: str) -> str:
    """web2, web3... (RUNNER_BACKENDS) are more of "web"."""
    return name.rstrip("0123456789")


def programs_of_the_stack(config: RunnerConfig, programs: Programs, nginx_main: Path) -> dict[str, Program]:
    """The processes of docker-compose.yml, stopped the way their images stop them: nginx and
    the app first, PostgreSQL and Redis last; the keys are PROCESS_NAMES."""
    postgres = [str(programs.postgres_bin / "postgres"), "-D", str(config.postgres_dir)]
    postgres += postgres_options(config)
    redis = [programs.redis_server, str(REDIS_CONF), "--port", str(config.redis_port), "--bind", "127.0.0.1"]
    redis += ["--dir", str(config.data / "redis")]
    # The password comes from the environment, so it is not written into the generated file.
    redis_in_shell = ["/bin/sh", "-c", "exec " + shlex.join(redis) + ' --requirepass "$REDIS_PASSWORD"']
    nginx = [programs.nginx, *nginx_config.nginx_arguments(config.run_dir / "nginx", nginx_main)]
    entrypoint = str(ENTRYPOINT)
    stack = {
        # SIGINT is a fast shutdown (what the postgres image's STOPSIGNAL does): open sessions
        # are ended, then a shutdown checkpoint; compose's stop_grace_period is 60 s.
        "postgres": Program(
            as_postgres_user(programs, postgres),
            priority=10,
            stop_signal="INT",
            stop_wait_seconds=60,
            start_seconds=5,
        ),
        # SIGTERM: Redis writes the AOF and exits.
        "redis": Program(
            redis_in_shell, priority=20, stop_signal="TERM", stop_wait_seconds=30, start_seconds=2
        ),
        # SIGTERM: gunicorn lets requests finish for graceful_timeout (20 s, ops/gunicorn.conf.py);
        # Celery finishes its running tasks (warm shutdown; acks_late re-queues one killed after).
        "web": gunicorn_program(entrypoint),
        "worker": Program(
            [entrypoint, "worker"], priority=30, stop_signal="TERM", stop_wait_seconds=60, start_seconds=10
        ),
        # The backup role's URL for this process only (supervisord gives all of them its own
        # environment, see start()); the others never read it.
        "backup": Program(
            [
                "/bin/sh",
                "-c",
                'BACKUP_DATABASE_URL="$RUNNER_BACKUP_DATABASE_URL" exec "$0" backup-worker',
                entrypoint,
            ],
            priority=30,
            stop_signal="TERM",
            stop_wait_seconds=60,
            start_seconds=10,
        ),
        "beat": Program(
            [entrypoint, "beat"], priority=30, stop_signal="TERM", stop_wait_seconds=10, start_seconds=10
        ),
        # SIGQUIT: nginx's graceful shutdown (the nginx image's STOPSIGNAL).
        "nginx": Program(
            [*nginx, "-g", "daemon off;"],
            priority=40,
            stop_signal="QUIT",
            stop_wait_seconds=10,
            start_seconds=2,
        ),
    }
    if config.pitr_enabled:
        stack["walswitch"] = wal_switch_program(config)
    return stack | more_backends(config, entrypoint)


def wal_switch_program(config: RunnerConfig) -> Program:
    """shop/backups/pitr/walswitch.py: a WAL segment closed (and archived) every
    PITR_ARCHIVE_TIMEOUT seconds, through pgBackRest's socket as the superuser."""
    return Program(
        # The password from supervisord's environment, not written into the generated file.
        [
            "/bin/sh",
            "-c",
            'PGPASSWORD="$POSTGRES_PASSWORD" exec "$0" -m shop.backups.pitr.walswitch',
            sys.executable,
        ],
        priority=15,
        stop_signal="TERM",
        stop_wait_seconds=5,
        start_seconds=2,
        environment={
            "PGHOST": str(config.pitr().pg_socket_dir),
            "PGPORT": str(config.postgres_port),
            "PGUSER": config.postgres_user,
            "PGDATABASE": "postgres",
        },
    )


def gunicorn_program(entrypoint: str, **environment: str) -> Program:
    return Program(
        [entrypoint, "web"],
        priority=30,
        stop_signal="TERM",
        stop_wait_seconds=30,
        start_seconds=10,
        environment=environment,
    )


def more_backends(config: RunnerConfig, entrypoint: str) -> dict[str, Program]:
    """web2..webN (RUNNER_BACKENDS): gunicorns like "web", each on its own port and socket."""
    return {
        f"web{number}": gunicorn_program(
            entrypoint,
            GUNICORN_BIND=address,
            GUNICORN_CONTROL_SOCKET=str(config.run_dir / f"gunicorn{number}.ctl"),
        )
        for number, address in enumerate(config.backend_addresses[1:], start=2)
    }


def ini_section(name: str, values: dict[str, object]) -> str:
    """One section of supervisord's configuration."""
    for value in map(str, values.values()):
        # supervisord expands %(...)s in its values, some twice: no escaping survives that.
        if "%" in value:
            raise RunnerError(
                f"supervisord cannot take a path with '%' ({value}): move DATA_PATH or the checkout."
            )
    return "".join([f"[{name}]\n", *(f"{key}={value}\n" for key, value in values.items()), "\n"])


def supervisor_environment(environment: dict[str, str]) -> dict[str, str]:
    """A program's `environment=` line (no secrets: those stay in supervisord's environment)."""
    if not environment:
        return {}
    for value in environment.values():
        if '"' in value or "," in value:
            raise RunnerError(f"supervisord cannot take {value!r} in a program's environment.")
    return {"environment": ",".join(f'{name}="{value}"' for name, value in environment.items())}


def supervisor_socket(config: RunnerConfig) -> Path:
    socket = config.run_dir / "supervisor.sock"
    if len(str(socket)) > 100:  # the limit of a unix socket's path is 107 bytes
        raise RunnerError(
            f"DATA_PATH is too long for supervisorctl's socket ({socket}): choose a shorter one."
        )
    return socket


def supervisor_config_path(config: RunnerConfig) -> Path:
    return config.run_dir / "supervisord.conf"


def supervisord_config(
    config: RunnerConfig, stack: dict[str, Program], autostart: Collection[str] = PROCESS_NAMES
) -> str:
    """supervisord's configuration: every process of `stack`, started if in `autostart`,
    restarted when it exits; logs in DATA_PATH/logs; supervisorctl through a unix socket."""
    logs = config.data / "logs"
    socket = supervisor_socket(config)
    # Run in the foreground, so Ctrl-C or SIGTERM to `make run` stops it and everything.
    daemon: dict[str, object] = {"nodaemon": "true", "logfile": logs / "supervisord.log"}
    daemon |= {"pidfile": config.run_dir / "supervisord.pid", "childlogdir": logs}
    if running_as_root():
        daemon["user"] = "root"  # said explicitly, or supervisord warns that it kept root
    text = "; Generated by ops/runner.py (the Docker-less stack); regenerated at every start.\n\n"
    text += ini_section("supervisord", daemon)
    text += ini_section("unix_http_server", {"file": socket, "chmod": "0700"})
    text += ini_section(
        "rpcinterface:supervisor",
        {"supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"},
    )
    text += ini_section("supervisorctl", {"serverurl": f"unix://{socket}"})
    for name, program in stack.items():
        text += ini_section(
            f"program:{name}",
            {
                "command": shlex.join(program.command),
                "directory": PROJECT_ROOT,
                "priority": program.priority,
                "autostart": str(
                    process_kind(name) in autostart or (name == "walswitch" and "postgres" in autostart)
                ).lower(),
                "autorestart": "true",  # like compose's `restart: unless-stopped`
                "startsecs": program.start_seconds,
                "startretries": START_RETRIES,
                "stopsignal": program.stop_signal,
                "stopwaitsecs": program.stop_wait_seconds,
                "killasgroup": "true",  # a SIGKILL also reaches gunicorn's and Celery's children
                "redirect_stderr": "true",
                "stdout_logfile": logs / f"{name}.log",
                "stdout_logfile_maxbytes": "10MB",
                "stdout_logfile_backups": 5,
                **supervisor_environment(program.environment),
            },
        )
    app = [name for name in stack if process_kind(name) in APP_PROCESSES]
    text += ini_section(f"group:{APP_GROUP}", {"programs": ",".join(app), "priority": stack[app[0]].priority})
    return text


def prepare(config: RunnerConfig, autostart: Collection[str] = PROCESS_NAMES) -> Path:
    """Everything before the processes start; returns supervisord's configuration file."""
    programs = find_programs()
    prepare_directories(config)
    # A point-in-time restore killed while switching data directories: finish it before anything
    # could take the missing live directory for a new installation.
    finished = pitr_switch.finish_interrupted_switch(config.postgres_dir)
    if finished:
        print(finished, flush=True)
    if config.pitr_enabled:
        prepare_pitr(config)
    if initialize_postgres(config, programs):
        print(f"Initialised a PostgreSQL cluster in {config.postgres_dir}", flush=True)
    release(config, programs)
    nginx_main = write_nginx_config(config, programs)
    stack = programs_of_the_stack(config, programs, nginx_main)
    path = supervisor_config_path(config)
    path.write_text(supervisord_config(config, stack, autostart))
    return path


def supervisor_program(name: str) -> str:
    """supervisord or supervisorctl from this virtualenv (make venv), else from PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        raise RunnerError(f"{name} is not installed: run `make venv` (it comes with requirements-dev.txt).")
    return found


def start(config: RunnerConfig, supervisor_config: Path) -> int:
    """Run supervisord until it has stopped everything; return its exit status.

    It runs in a session of its own, so a terminal's signals reach only this process, which
    asks supervisord to stop (SIGTERM) for Ctrl-C, a kill and a closed terminal alike:
    supervisord itself would take the terminal's SIGHUP for "reload" and keep running.
    """
    supervisord = supervisor_program("supervisord")
    print(
        f"\nThe shop is starting at {config.url}  (Ctrl-C stops everything)\n"
        f"Logs: {config.data / 'logs'}/<process>.log. One process: `python -m ops.runner ctl "
        "status|stop|start|restart NAME` (postgres, redis, nginx, app:web, app:worker, app:backup,"
        " app:beat; app:* for all four)\n",
        flush=True,
    )
    # The processes get their environment (secrets included) from supervisord's own, not from
    # the generated file. The backup worker's program makes RUNNER_BACKUP_DATABASE_URL its
    # BACKUP_DATABASE_URL: the others run as the same OS user, so this keeps the roles apart by
    # configuration, not as a security boundary.
    environment = {**config.app_environment(), "RUNNER_BACKUP_DATABASE_URL": config.backup_database_url()}
    process = subprocess.Popen(
        [supervisord, "--configuration", str(supervisor_config)], env=environment, start_new_session=True
    )

    def stop_supervisord(signum, frame):
        with suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop_supervisord)
    return process.wait()


def ctl(arguments: list[str]) -> int:
    """`python -m ops.runner ctl status` (or stop/start/restart/tail NAME): supervisorctl
    against the running stack."""
    try:
        config = RunnerConfig.from_environment()
        supervisorctl = supervisor_program("supervisorctl")
    except RunnerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    command = [supervisorctl, "--configuration", str(supervisor_config_path(config)), *arguments]
    os.execv(supervisorctl, command)  # noqa: S606 (fixed program)
    return 0  # not reached


def manage(arguments: list[str]) -> int:
    """`python -m ops.runner manage CMD ...`: a manage.py command against the running stack's
    services and data (for example `manage restore_backup --latest`)."""
    try:
        config = RunnerConfig.from_environment()
    except RunnerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    command = [sys.executable, str(PROJECT_ROOT / "manage.py"), *arguments]
    # An admin's commands (backup_now, restore_backup, ...) get the backup role too; the shop's
    # own connection (migrate, createsuperuser) stays the app role's.
    os.execve(sys.executable, command, config.backup_environment())  # noqa: S606 (fixed program)
    return 0  # not reached


def restore(arguments: list[str]) -> int:
    """`python -m ops.runner restore --to TIME [--repo N] [--identity FILE] [--yes] [--dry-run]`:
    point-in-time recovery of the running stack (README "Point-in-time recovery"): checks first
    (nothing stops if the archive cannot reach TIME), stops the app and PostgreSQL, runs
    `manage.py restore_backup --to` (images missing locally come from S3, decrypted with the
    identity), starts them again (also when the restore failed: the live data is then untouched)."""
    parser = argparse.ArgumentParser(prog="python -m ops.runner restore", description=restore.__doc__)
    parser.add_argument("--to", required=True, metavar="TIME", help='"2026-11-28 10:15:00+00" or latest')
    parser.add_argument(
        "--repo",
        choices=["1", "2"],
        help="the pgBackRest repository (1: the backup volume, 2: S3); default: the one that can serve TIME",
    )
    parser.add_argument(
        "--identity",
        metavar="FILE",
        help="the age identity file for encrypted image blobs fetched from S3 "
        "(default: BACKUP_AGE_IDENTITY_FILE)",
    )
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--dry-run", action="store_true", help="check and print the plan, change nothing")
    args = parser.parse_args(arguments)
    try:
        config = RunnerConfig.from_environment()
        if not config.pitr_enabled:
            raise RunnerError("PITR_ENABLED is off: there is no WAL archive (restore a backup set instead).")
        supervisorctl = supervisor_program("supervisorctl")
    except RunnerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    manage_command = [sys.executable, str(PROJECT_ROOT / "manage.py"), "restore_backup", "--to", args.to]
    if args.repo:
        manage_command += ["--repo", args.repo]
    if args.identity:
        manage_command += ["--identity", str(Path(args.identity).resolve())]
    environment = config.backup_environment()
    checked = subprocess.run([*manage_command, "--dry-run"], env=environment, check=False)
    if checked.returncode != 0 or args.dry_run:
        return checked.returncode
    if not args.yes:
        answer = input(
            "Stop the shop and PostgreSQL, restore to this time and start them again? Type 'yes': "
        )
        if answer.strip().lower() != "yes":
            print("Cancelled: nothing was changed.")
            return 1
    ctl_command = [supervisorctl, "--configuration", str(supervisor_config_path(config))]
    supervised = (
        supervisor_socket(config).exists()
        and subprocess.run([*ctl_command, "pid"], capture_output=True, check=False).returncode == 0
    )
    if supervised:
        print("Stopping the shop's processes and PostgreSQL", flush=True)
        subprocess.run([*ctl_command, "stop", f"{APP_GROUP}:*"], check=False)
        subprocess.run([*ctl_command, "stop", "postgres"], check=False)
    try:
        restored = subprocess.run([*manage_command, "--yes"], env=environment, check=False)
    finally:
        if supervised:
            print("Starting PostgreSQL and the shop's processes", flush=True)
            subprocess.run([*ctl_command, "start", "postgres"], check=False)
            subprocess.run([*ctl_command, "start", f"{APP_GROUP}:*"], check=False)
    if not supervised and restored.returncode == 0:
        print("The stack is not running: start it with `make run`.")
    if supervised and restored.returncode == 0:
        repair_pitr(config)
    return restored.returncode


def repair_pitr(config: RunnerConfig) -> None:
    """After a restore: a repository that was lost (the backup volume's, restored from S3) gets its
    stanza and a full backup again, so the WAL of the new timeline is archived to both. A failure
    here leaves the restored shop running and says what to do."""
    ready = [str((find_postgres_bin() or Path()) / "pg_isready"), "-q", "-h", "127.0.0.1"]
    try:
        make_pitr_directories(config)  # repo1's directory, if it was lost
        run([*ready, "-p", str(config.postgres_port), "-t", "60"])
        start_pitr(config)
    except (RunnerError, subprocess.CalledProcessError, OSError) as error:
        print(
            f"warning: the restore succeeded, but pgBackRest's repositories could not be made whole "
            f"again: {error}\nRun `python -m ops.runner manage pitr_backup --missing` once that is fixed.",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["manage"]:
        return manage(argv[1:])
    if argv[:1] == ["restore"]:
        return restore(argv[1:])
    if argv[:1] == ["ctl"]:
        return ctl(argv[1:])
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="`manage CMD [ARGS]`: a manage.py command against the stack, e.g. `manage createsuperuser`; "
        "`ctl [ARGS]`: supervisorctl against the running stack, e.g. `ctl status`, `ctl stop web`.",
    )
    parser.add_argument(
        "command",
        nargs="?",
        default="run",
        choices=["run", "prepare"],
        help="run: prepare and start everything (default); prepare: only initialise, migrate, render",
    )
    parser.add_argument(
        "processes",
        nargs="*",
        metavar="PROCESS",
        help=f"start only these ({', '.join(PROCESS_NAMES)}), e.g. `run postgres` for maintenance",
    )
    args = parser.parse_args(argv)
    unknown = set(args.processes) - set(PROCESS_NAMES)
    if unknown:
        parser.error(f"unknown process {', '.join(sorted(unknown))}; choose from {', '.join(PROCESS_NAMES)}")
    try:
        config = RunnerConfig.from_environment()
        supervisor_config = prepare(config, autostart=args.processes or PROCESS_NAMES)
    except (RunnerError, nginx_config.NginxConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as error:
        command = shlex.join(map(str, error.cmd))
        print(f"error: {command} failed (exit status {error.returncode})", file=sys.stderr)
        return 1
    if args.command == "prepare":
        print(f"Prepared {config.data} (supervisord configuration: {supervisor_config})")
        return 0
    try:
        return start(config, supervisor_config)
    except RunnerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

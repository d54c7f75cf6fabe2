"""`make init` (ops/init_stack.py) and the runner's checks that need no running stack."""

import os
import re
import runpy
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from supervisor.datatypes import RestartUnconditionally
from supervisor.options import ServerOptions

from ops import healthcheck, init_stack, runner
from tests.stack.compose import PROJECT_ROOT

APP_SERVICES = {"migrate", "backend", "worker", "backup", "beat"}


@pytest.fixture
def project(tmp_path):
    shutil.copy(PROJECT_ROOT / ".env.example", tmp_path / ".env.example")
    return tmp_path


def test_generated_secrets_never_start_with_a_dash():
    """A secret given to a command-line tool as an argument (minio-setup's `mc alias set ...
    SECRET`) must not look like an option: one in 64 of token_urlsafe's strings starts with '-'."""
    assert not any(init_stack.new_secret().startswith("-") for _ in range(2000))


def test_init_creates_env_with_fresh_secrets_once(project):
    assert init_stack.ensure_env_file(project) is True

    env_file = project / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = init_stack.read_env_file(env_file)
    secrets = [values[name] for name in init_stack.GENERATED_SECRETS]
    assert all(len(secret) >= 32 and not secret.startswith("change-me") for secret in secrets)
    assert len(set(secrets)) == len(secrets)
    assert values["DATA_PATH"] == str(project / "data")
    assert values["BACKUP_PATH"] == str(project / "backups")
    # Everything else as in the example.
    example = init_stack.read_env_file(project / ".env.example")
    assert set(values) == set(example)

    before = env_file.read_text()
    assert init_stack.ensure_env_file(project) is False
    assert env_file.read_text() == before


def test_init_creates_the_data_directories(tmp_path):
    created = init_stack.create_data_dirs(tmp_path / "data", tmp_path / "backups")

    names = {path.relative_to(tmp_path).as_posix() for path in created}
    assert names == {
        "data/postgres", "data/uploads", "data/redis", "data/logs", "data/nginx-logs", "backups"
    }  # fmt: skip
    assert stat.S_IMODE((tmp_path / "data" / "postgres").stat().st_mode) == 0o700
    assert init_stack.create_data_dirs(tmp_path / "data", tmp_path / "backups") == []


def test_runner_says_what_to_install_when_a_program_is_missing(monkeypatch):
    monkeypatch.setattr(runner, "find_postgres_bin", lambda: None)
    monkeypatch.setattr(runner.nginx_config, "find_nginx", lambda: None)
    monkeypatch.setenv("PATH", "/nonexistent")

    with pytest.raises(runner.RunnerError) as error:
        runner.find_programs()

    message = str(error.value)
    assert "apt-get install postgresql" in message
    assert "apt-get install redis-server" in message
    assert "apt-get install nginx-light" in message
    assert "brew install" in message


def runner_config(data: Path, **more: str) -> runner.RunnerConfig:
    return runner.RunnerConfig.from_environment(
        {"DJANGO_READ_DOT_ENV": "false", "DATA_PATH": str(data), "POSTGRES_PASSWORD": "p",
         "REDIS_PASSWORD": "redis-password", "DJANGO_SECRET_KEY": "k" * 40,
         "APP_DB_PASSWORD": "app-db-password", "BACKUP_DB_PASSWORD": "backup-db-password", **more}
    )  # fmt: skip


# Where the programs are does not matter to the configuration: these tests need none installed.
SOME_PROGRAMS = runner.Programs(
    postgres_bin=Path("/usr/lib/postgresql/15/bin"),
    psql="psql",
    redis_server="/usr/bin/redis-server",
    nginx="/usr/sbin/nginx",
    setpriv=None,
)


def supervisord_reads(text: str, directory: Path):
    """The configuration as supervisord itself reads it (its own parser, its own checks)."""
    path = directory / "supervisord.conf"
    path.write_text(text)
    return ServerOptions().read_config(str(path))


def supervised(section) -> dict:
    return {
        process.name: process for group in section.process_group_configs for process in group.process_configs
    }


def stack_configuration(data: Path, environment: dict[str, str] | None = None, **options) -> str:
    for directory in ("logs", "run"):  # supervisord checks that they exist
        (data / directory).mkdir(parents=True, exist_ok=True)
    config = runner_config(data, **(environment or {}))
    stack = runner.programs_of_the_stack(config, SOME_PROGRAMS, data / "run" / "nginx" / "nginx.conf")
    return runner.supervisord_config(config, stack, **options)


def test_supervisord_runs_every_process_and_restarts_one_that_dies(tmp_path):
    text = stack_configuration(tmp_path)
    section = supervisord_reads(text, tmp_path)
    processes = supervised(section)

    assert set(processes) == set(runner.PROCESS_NAMES)
    for name, process in processes.items():
        assert process.autostart
        assert process.autorestart is RestartUnconditionally  # compose's `restart: unless-stopped`
        # A failed start is retried with a growing delay, then given up on (FATAL).
        assert 3 <= process.startretries == runner.START_RETRIES
        assert process.startsecs >= 2
        assert process.stdout_logfile == str(tmp_path / "logs" / f"{name}.log")
        assert process.redirect_stderr
        assert process.killasgroup  # a SIGKILL also reaches gunicorn's and Celery's children
    assert section.nodaemon  # in the foreground: Ctrl-C reaches it
    assert section.logfile == str(tmp_path / "logs" / "supervisord.log")
    # supervisorctl through a unix socket only its owner can use.
    [server] = section.server_configs
    assert server["file"] == str(tmp_path / "run" / "supervisor.sock")
    assert server["chmod"] == 0o700
    assert f"serverurl=unix://{tmp_path}/run/supervisor.sock" in text
    assert "redis-password" not in text  # the password reaches Redis through the environment


def test_stack_stops_nginx_and_the_app_first_and_each_process_the_clean_way(tmp_path, monkeypatch):
    section = supervisord_reads(stack_configuration(tmp_path), tmp_path)
    processes = supervised(section)
    groups = {group.name: group for group in section.process_group_configs}

    # supervisord stops one group after the other, the highest priority first: nginx, then the
    # app's processes together, then Redis, and PostgreSQL last.
    order = sorted(groups, key=lambda name: groups[name].priority, reverse=True)
    assert order == ["nginx", "app", "redis", "postgres"]
    assert {process.name for process in groups["app"].process_configs} == {"web", "worker", "backup", "beat"}
    # PostgreSQL: fast shutdown (sessions ended, a shutdown checkpoint), 60 s like compose's.
    assert processes["postgres"].stopsignal == signal.SIGINT
    assert processes["postgres"].stopwaitsecs >= 60
    assert processes["redis"].stopsignal == signal.SIGTERM  # writes the AOF and exits
    # gunicorn finishes its requests for graceful_timeout; Celery its tasks (warm shutdown).
    # The config file sets PROMETHEUS_MULTIPROC_DIR in os.environ (for gunicorn's workers): keep
    # it out of this test process, whose later subprocesses (manage.py migrate) would inherit it.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    gunicorn = runpy.run_path(str(PROJECT_ROOT / "ops" / "gunicorn.conf.py"))
    assert processes["web"].stopsignal == signal.SIGTERM
    assert processes["web"].stopwaitsecs > gunicorn["graceful_timeout"]
    for name in ("worker", "backup"):
        assert processes[name].stopsignal == signal.SIGTERM
        assert processes[name].stopwaitsecs >= 30
    assert processes["nginx"].stopsignal == signal.SIGQUIT  # graceful, like the nginx image


def test_maintenance_mode_starts_only_the_chosen_processes(tmp_path):
    text = stack_configuration(tmp_path, autostart=["postgres"])
    processes = supervised(supervisord_reads(text, tmp_path))

    assert {name for name, process in processes.items() if process.autostart} == {"postgres"}
    assert set(processes) == set(runner.PROCESS_NAMES)  # the rest can be started with `ctl start`


def test_a_path_supervisord_would_misread_is_refused_with_the_reason(tmp_path):
    data = tmp_path / "100% shop"  # supervisord expands %(...)s, some values twice

    with pytest.raises(runner.RunnerError, match="supervisord cannot take a path with '%'"):
        stack_configuration(data)


def test_only_the_backup_worker_gets_the_backup_role(tmp_path):
    text = stack_configuration(tmp_path)
    processes = supervised(supervisord_reads(text, tmp_path))

    takes_the_role = [name for name, process in processes.items() if "BACKUP_DATABASE_URL" in process.command]
    assert takes_the_role == ["backup"]
    assert 'BACKUP_DATABASE_URL="$RUNNER_BACKUP_DATABASE_URL"' in processes["backup"].command
    assert "backup-db-password" not in text  # from supervisord's environment, not the file


def test_runner_needs_the_secrets(monkeypatch):
    env = {"DJANGO_READ_DOT_ENV": "false", "POSTGRES_PASSWORD": "x"}
    expected = (
        "APP_DB_PASSWORD, BACKUP_DB_PASSWORD, REDIS_PASSWORD, DJANGO_SECRET_KEY not set. Run `make init`"
    )
    with pytest.raises(runner.RunnerError, match=re.escape(expected)):
        runner.RunnerConfig.from_environment(env)


def test_runner_uses_its_own_ports_and_production_settings(tmp_path):
    env = {
        "DJANGO_READ_DOT_ENV": "false",
        "DATA_PATH": str(tmp_path),
        "POSTGRES_PASSWORD": "pg secret/with:odd@chars",
        "APP_DB_PASSWORD": "app secret/with:odd@chars",
        "BACKUP_DB_PASSWORD": "backup-secret",
        "BACKUP_DATABASE_URL": "postgres://from-the-caller/db",
        "REDIS_PASSWORD": "redis-secret",
        "DJANGO_SECRET_KEY": "k" * 50,
        "CELERY_BROKER_URL": "redis://elsewhere:6379/0",
    }
    config = runner.RunnerConfig.from_environment(env)
    app = config.app_environment()

    assert {config.http_port, config.app_port, config.postgres_port, config.redis_port}.isdisjoint(
        {5432, 6379}
    )
    # The shop connects as the app role, never as the superuser POSTGRES_USER; the backup role
    # only in the backup worker's and `manage`'s environment.
    assert app["DATABASE_URL"] == "postgres://shop_app:app%20secret%2Fwith%3Aodd%40chars@127.0.0.1:18432/shop"
    assert "BACKUP_DATABASE_URL" not in app
    backup = config.backup_environment()
    assert backup["DATABASE_URL"] == app["DATABASE_URL"]
    assert backup["BACKUP_DATABASE_URL"] == "postgres://shop_backup:backup-secret@127.0.0.1:18432/shop"
    assert app["REDIS_URL"] == "redis://:redis-secret@127.0.0.1:18379"
    assert "CELERY_BROKER_URL" not in app
    assert app["DJANGO_DEBUG"] == "false"
    assert app["DJANGO_SECURE_SSL_REDIRECT"] == "false"  # plain HTTP on loopback
    assert app["MEDIA_ROOT"] == str(tmp_path / "uploads")
    assert app["LOG_DIR"] == str(tmp_path / "logs")


def test_runner_passes_dot_env_settings_on_to_the_shop(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text(
        "POSTGRES_PASSWORD=a\nREDIS_PASSWORD=b\nDJANGO_SECRET_KEY=" + "k" * 40 + "\n"
        "APP_DB_PASSWORD=c\nBACKUP_DB_PASSWORD=d\n"
        "SHOP_NAME=From Dot Env\nDATABASE_URL=postgres://elsewhere/db\n"
    )
    monkeypatch.setattr(runner, "PROJECT_ROOT", tmp_path)

    app = runner.RunnerConfig.from_environment({"DATA_PATH": str(tmp_path)}).app_environment()

    assert app["SHOP_NAME"] == "From Dot Env"
    assert app["DATABASE_URL"].endswith("@127.0.0.1:18432/shop")  # the runner's own database


@pytest.mark.skipif(os.geteuid() != 0, reason="only root has to hand PostgreSQL to the postgres user")
def test_as_root_postgres_runs_as_the_postgres_user_and_gets_signals_directly(stack_programs):
    command = runner.as_postgres_user(stack_programs, ["postgres", "-D", "x"])
    # setpriv execs PostgreSQL (runuser would stay in between and SIGKILL it 2 s after SIGTERM).
    assert command[0].endswith("setpriv")
    assert "--reuid=postgres" in command
    assert command[-3:] == ["postgres", "-D", "x"]


def test_entrypoint_knows_every_role_the_compose_files_and_the_runner_use():
    entrypoint = PROJECT_ROOT / "ops" / "entrypoint.sh"
    subprocess.run(["sh", "-n", str(entrypoint)], check=True)  # valid POSIX sh
    roles = set(re.findall(r"^    ([a-z-]+)\)$", entrypoint.read_text(), flags=re.MULTILINE))
    used = {"web", "worker", "backup-worker", "beat", "migrate", "dev"}
    for file in ("docker-compose.yml", "docker-compose.override.yml"):
        services = yaml.safe_load((PROJECT_ROOT / file).read_text())["services"]
        used |= {services[name]["command"][0] for name in APP_SERVICES if "command" in services.get(name, {})}
    assert used <= roles


@pytest.mark.parametrize(
    ("allowed_hosts", "probe_host"),
    [
        ("shop.example.com,www.example.com", "shop.example.com"),
        (".example.com", "example.com"),
        ("*", "localhost"),
    ],
)
def test_container_healthcheck_names_an_allowed_host(monkeypatch, allowed_hosts, probe_host):
    monkeypatch.setenv("DJANGO_ALLOWED_HOSTS", allowed_hosts)
    assert healthcheck.probe_host() == probe_host


def test_init_makes_the_pgbackrest_tls_certificates_once(tmp_path):
    """make init: a CA of the stack's own (its key thrown away), one certificate per side with the
    compose service's name, private keys (pgBackRest refuses any other mode)."""
    directory = tmp_path / "tls"
    created = init_stack.create_pgbackrest_tls(directory, (os.getuid(), os.getgid()))
    assert sorted(path.name for path in created) == ["ca.crt", "pg.crt", "pg.key", "repo.crt", "repo.key"]
    assert sorted(path.name for path in directory.iterdir()) == sorted(path.name for path in created)
    for name in ("pg.key", "repo.key"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
    for name, common_name in (("pg", "pgbackrest-db"), ("repo", "pgbackrest-repo")):
        certificate = directory / f"{name}.crt"
        verified = subprocess.run(
            ["openssl", "verify", "-CAfile", directory / "ca.crt", certificate],
            capture_output=True,
            text=True,
        )
        assert verified.returncode == 0, verified.stderr
        text = subprocess.run(
            ["openssl", "x509", "-in", certificate, "-noout", "-subject", "-ext", "subjectAltName"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert f"CN = {common_name}" in text
        assert f"DNS:{common_name}" in text
    before = (directory / "repo.key").read_bytes()
    assert init_stack.create_pgbackrest_tls(directory) == []
    assert (directory / "repo.key").read_bytes() == before

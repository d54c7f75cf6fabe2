"""`make init` (ops/init_stack.py) and the runner's checks that need no running stack."""

import os
import re
import shutil
import stat
import subprocess

import pytest
import yaml

from ops import healthcheck, init_stack, runner
from tests.stack.compose import PROJECT_ROOT

APP_SERVICES = {"migrate", "backend", "worker", "backup", "beat"}


@pytest.fixture
def project(tmp_path):
    shutil.copy(PROJECT_ROOT / ".env.example", tmp_path / ".env.example")
    return tmp_path


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


def test_procfile_runs_every_process_of_the_stack(tmp_path):
    config = runner.RunnerConfig.from_environment(
        {"DJANGO_READ_DOT_ENV": "false", "DATA_PATH": str(tmp_path), "POSTGRES_PASSWORD": "p",
         "REDIS_PASSWORD": "r", "DJANGO_SECRET_KEY": "k" * 40, "APP_DB_PASSWORD": "a",
         "BACKUP_DB_PASSWORD": "b"}
    )  # fmt: skip
    programs = runner.find_programs()
    text = runner.procfile_text(config, programs, tmp_path / "nginx.conf")

    names = [line.split(":", 1)[0] for line in text.splitlines() if not line.startswith("#")]
    assert tuple(names) == runner.PROCESS_NAMES
    assert "r" not in re.findall(r"--requirepass (\S+)", text)  # the password stays out of the file
    # Only the backup worker gets the backup role, and its password stays out of the file too.
    backup_lines = [line for line in text.splitlines() if "BACKUP_DATABASE_URL" in line]
    assert [line.split(":", 1)[0] for line in backup_lines] == ["backup"]
    assert 'BACKUP_DATABASE_URL="$RUNNER_BACKUP_DATABASE_URL"' in backup_lines[0]


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
def test_as_root_postgres_runs_as_the_postgres_user_and_gets_signals_directly():
    programs = runner.find_programs()
    command = runner.as_postgres_user(programs, ["postgres", "-D", "x"])
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

"""Production mode: `check --deploy` is clean, and a default secret key is refused."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from shop.settings import DEVELOPMENT_SECRET_KEY

ROOT = Path(__file__).resolve().parent.parent


def manage(*args, unset: tuple[str, ...] = (), **env):
    """manage.py in a process of its own, with these variables set and those in `unset` removed."""
    inherited = {name: value for name, value in os.environ.items() if name not in unset}
    return python("manage.py", *args, environment={**inherited, "DJANGO_READ_DOT_ENV": "false", **env})


def python(*args: str, environment: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_deploy_passes_in_production_mode(tmp_path):
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="shop.example.com",
        LOG_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    "secret_key",
    [
        "",
        DEVELOPMENT_SECRET_KEY,
        "change-me-in-the-env-file-please-0123456789-abcdefghijklmnopqrstuvwxyz",
        "short",
        "x" * 32,
        " " * 32,
        "x" * 64,  # long, but 1 distinct character
        "abab" * 20,  # long, but 2 distinct characters
        "django-insecure-" + "q8Zr1fT0vKp3LmW9sX2nY7bC4dE6gH5jQ0wR8tU1iO3pA",
        secrets.token_urlsafe(32),  # 43 characters
    ],
)
def test_production_refuses_to_start_with_a_default_or_weak_secret_key(tmp_path, secret_key):
    result = manage("check", DJANGO_DEBUG="false", DJANGO_SECRET_KEY=secret_key, LOG_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is missing, too short or still the default" in result.stderr


@pytest.mark.parametrize("secret_key", [secrets.token_urlsafe(50), secrets.token_hex(25)])
def test_production_accepts_a_strong_secret_key(tmp_path, secret_key):
    result = manage("check", DJANGO_DEBUG="false", DJANGO_SECRET_KEY=secret_key, LOG_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr


PRINT_DEBUG = "from django.conf import settings; print(settings.DEBUG)"


def test_debug_is_off_unless_turned_on(tmp_path):
    result = manage(
        "shell",
        "-c",
        PRINT_DEBUG,
        unset=("DJANGO_DEBUG",),
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        LOG_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_production_refuses_a_missing_secret_key(tmp_path):
    result = manage("check", unset=("DJANGO_SECRET_KEY",), DJANGO_DEBUG="false", LOG_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_backup_database_url_must_name_the_shop_database(tmp_path):
    result = manage(
        "check",
        DATABASE_URL="postgres://shop_app@127.0.0.1:5432/shop",
        BACKUP_DATABASE_URL="postgres://shop_backup@127.0.0.1:5432/postgres",
        LOG_DIR=str(tmp_path),
    )
    assert result.returncode != 0
    assert "BACKUP_DATABASE_URL names the database 'postgres', but the shop's is 'shop'" in result.stderr


@pytest.mark.parametrize(
    ("backup_url", "expected_user"),
    [
        (None, "shop_app"),  # unset: DATABASE_URL's connection, as before
        ("postgres://shop_backup:pw@127.0.0.1:5432/shop", "shop_backup"),
        ("postgres://shop_backup:pw@127.0.0.1:5432", "shop_backup"),
    ],
)
def test_the_backups_connect_with_backup_database_url(tmp_path, backup_url, expected_user):
    code = (
        "from shop.backups.database import connection_params, libpq_env; "
        "p = connection_params('shop'); e = libpq_env('shop'); "
        "print(p['user'], p['dbname'], e['PGUSER'], e['PGDATABASE'])"
    )
    env = {"DATABASE_URL": "postgres://shop_app:pw@127.0.0.1:5432/shop", "LOG_DIR": str(tmp_path)}
    if backup_url:
        env["BACKUP_DATABASE_URL"] = backup_url
    result = manage("shell", "-c", code, unset=("BACKUP_DATABASE_URL",), **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].split() == [expected_user, "shop", expected_user, "shop"]


def test_the_site_admins_come_from_django_admins(tmp_path):
    code = "from django.conf import settings; print(settings.ADMINS)"
    admins = "Ops Team <ops@example.com>,jane@example.com"
    result = manage("shell", "-c", code, DJANGO_ADMINS=admins, LOG_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[('Ops Team', 'ops@example.com'), ('', 'jane@example.com')]"

    result = manage("shell", "-c", code, DJANGO_ADMINS="Ops Team", LOG_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "DJANGO_ADMINS='Ops Team' has an entry without an email address" in result.stderr


def django_script(script: str, tmp_path, **env) -> subprocess.CompletedProcess:
    """`script` run by python in a process of its own, with Django's settings and these variables."""
    environment = {
        **os.environ,
        "DJANGO_READ_DOT_ENV": "false",
        "DJANGO_SETTINGS_MODULE": "shop.settings",
        "LOG_DIR": str(tmp_path),
        **env,
    }
    return python("-c", script, environment=environment)


@pytest.mark.parametrize("schedule", ["0 2 * *", "0 2 * * * *", "0 2 * * mon;rm"])
def test_a_backup_schedule_that_is_not_5_cron_fields_is_refused(tmp_path, schedule):
    result = manage("check", BACKUP_SCHEDULE=schedule, LOG_DIR=str(tmp_path))
    assert result.returncode != 0
    assert f"BACKUP_SCHEDULE={schedule!r} is not a 5-field cron expression" in result.stderr


def test_beat_gets_celery_crontabs_of_the_cron_settings(tmp_path):
    """Settings keep cron expressions as strings (no Celery import there); the app makes crontabs."""
    script = (
        "import django; django.setup()\n"
        "from celery.schedules import crontab\n"
        "from shop.celery import app\n"
        "schedule = app.conf.beat_schedule\n"
        "assert schedule['backup-set']['schedule'] == crontab('15', '3', '1-5', '*', '*'), schedule\n"
        "assert schedule['verify-latest-set']['schedule'] == crontab('30', '4', '0', '*', '*'), schedule\n"
        "print(type(schedule['check-backup-alerts']['schedule']).__name__)\n"
    )
    result = django_script(
        script, tmp_path, BACKUP_SCHEDULE="15 3 * * 1-5", BACKUP_VERIFY_SCHEDULE="30 4 * * 0"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "timedelta"  # left as it was


def test_a_backup_command_does_not_load_celery(tmp_path):
    """Celery (~0.15 s, ~8 MB of every start-up) is loaded by what sends or runs tasks, not by
    settings or the shop package: the backup and restore commands do without it."""
    script = (
        "import sys, django; django.setup()\n"
        "from django.core.management import load_command_class\n"
        "for name in ('backup_now', 'restore_backup', 'verify_backup', 'list_backups'):\n"
        "    load_command_class('shop.backups', name)\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('celery', 'kombu')))\n"
        "from shop import celery_app\n"
        "print(celery_app.main)\n"
    )
    result = django_script(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]", "shop"]


def test_the_log_file_is_opened_at_the_first_record_and_rotates_like_before(tmp_path):
    """A process that logs nothing to the file (a successful backup) does not import the file
    handler (portalocker imports redis: ~0.07 s of every start-up); the first record opens it,
    written by concurrent_log_handler with the rotation settings."""
    script = (
        "import logging, sys, django; django.setup()\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('portalocker', 'redis')))\n"
        "logging.getLogger('shop.test').info('first record')\n"
        "[handler] = [h for h in logging.getLogger().handlers if hasattr(h, '_handler')]\n"
        "print(type(handler._handler).__name__, handler._handler.maxBytes, handler._handler.backupCount)\n"
    )
    log = tmp_path / "shop.log"
    result = django_script(script, tmp_path, LOG_LEVEL="INFO")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]", f"ConcurrentRotatingFileHandler {10 * 1024 * 1024} 10"]
    written = log.read_text()
    assert written.endswith(" shop.test: first record\n"), written
    assert " INFO " in written
    assert "AXES: BEGIN" not in written  # its start-up banner alone would open the file


def test_the_log_file_is_not_created_by_a_process_that_logs_nothing(tmp_path):
    result = django_script("import django; django.setup()", tmp_path, LOG_LEVEL="INFO")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "shop.log").exists()


def test_a_log_file_that_cannot_be_written_is_refused_at_start_up(tmp_path):
    """The file is opened at the first record, so settings check it at start-up instead: a
    process must not start and then fail at its first log line. (Tests run as root, for whom
    every existing file is writable: a directory in the file's place stands for any such file.)"""
    (tmp_path / "shop.log").mkdir()
    result = django_script("import django; django.setup()", tmp_path)
    assert result.returncode != 0
    assert f"The log file {tmp_path / 'shop.log'} is not a file" in result.stderr

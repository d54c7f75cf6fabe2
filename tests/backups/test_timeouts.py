"""Nothing hangs forever: pg_dump/pg_restore have a time limit, Celery tasks have time limits."""

import json
import os
import time

import psycopg
import pytest
from django.core.management.base import CommandError

from shop import celery_app
from shop.backups import database, local
from shop.backups.errors import BackupError
from tests.backups.conftest import run_command

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def locked_table(shop_data, settings):
    """Another session holds an ACCESS EXCLUSIVE lock on a table: pg_dump cannot get its share lock."""
    db = settings.DATABASES["default"]
    conn = psycopg.connect(dbname=db["NAME"], host=db["HOST"], port=db["PORT"], user=db["USER"])
    conn.execute("LOCK TABLE catalog_product IN ACCESS EXCLUSIVE MODE")
    yield
    conn.rollback()
    conn.close()


def tool_processes(marker: str) -> list[int]:
    """Our own child processes (others may run backups on this machine) whose command line
    holds `marker`."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as stat_file:
                parent = int(stat_file.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                if parent == os.getpid() and marker.encode() in cmdline.read():
                    pids.append(int(entry))
        except (OSError, ValueError):  # gone meanwhile, or not a process (/proc/net, ...)
            continue
    return pids


def test_a_dump_blocked_by_a_lock_is_stopped_and_nothing_is_published(
    locked_table, backup_settings, settings
):
    settings.BACKUP_PG_TIMEOUT = 2
    started = time.monotonic()

    with pytest.raises(CommandError, match=r"did not finish within 2 s \(BACKUP_PG_TIMEOUT\)"):
        run_command("backup_now", "--no-upload")

    assert time.monotonic() - started < 30
    assert local.local_set_ids() == []
    assert [p.name for p in backup_settings.BACKUP_PATH.iterdir() if p.name.startswith(".incomplete")] == []
    status = json.loads((backup_settings.BACKUP_PATH / "status.json").read_text())
    assert "BACKUP_PG_TIMEOUT" in status["last_failure"]["error"]
    assert tool_processes("--snapshot=") == []  # pg_dump was killed, not left behind


def test_a_restore_that_cannot_finish_is_stopped(settings, tmp_path):
    """pg_restore reading a FIFO nobody writes to blocks for ever: the time limit kills it."""
    settings.BACKUP_PG_TIMEOUT = 1
    fifo = tmp_path / "never-written.dump"
    os.mkfifo(fifo)
    started = time.monotonic()

    with pytest.raises(BackupError, match=r"pg_restore did not finish within 1 s"):
        database.restore_dump(fifo, database.derived_name("verify_timeout"))

    assert time.monotonic() - started < 15
    assert tool_processes(str(fifo)) == []


def test_every_task_has_soft_and_hard_time_limits(settings):
    celery_app.loader.import_default_modules()
    tasks = {name: task for name, task in celery_app.tasks.items() if name.startswith("shop.")}
    quick = {
        "shop.catalog.tasks.generate_thumbnails",
        "shop.orders.tasks.send_order_confirmation",
        "shop.backups.tasks.check_backup_alerts",
        "shop.backups.tasks.archive_images",  # one image at a time: seconds
    }
    backups = {
        "shop.backups.tasks.scheduled_backup",
        "shop.backups.tasks.upload_backup_set",
        "shop.backups.tasks.verify_latest_set",
        "shop.backups.tasks.pitr_backup",
    }
    assert set(tasks) == quick | backups
    for name, task in tasks.items():
        soft = task.soft_time_limit or celery_app.conf.task_soft_time_limit
        hard = task.time_limit or celery_app.conf.task_time_limit
        assert soft, name
        assert hard, name
        assert soft < hard, name
        if name in quick:
            assert hard <= 300, name  # seconds, not hours
        else:
            # Hours, and above the dump's own limit, which ends a stuck dump with a clear error first.
            assert soft >= 3600, name
            assert soft > settings.BACKUP_PG_TIMEOUT, name
            # Longer than Redis's visibility timeout: an unacknowledged backup would run twice.
            assert task.acks_late is False, name

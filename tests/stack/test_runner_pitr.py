"""Point-in-time recovery on the Docker-less runner (issue 12): the drill, and archiving failures.

PITR_ARCHIVE_TIMEOUT is 5 s here (60 s by default) so that the drill takes seconds, not minutes:
the promise under test is "every order committed up to T - archive_timeout is back".
"""

import hashlib
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import requests

from ops.runner import PROJECT_ROOT
from tests.shop_http import add_to_cart, browser, place_order
from tests.shop_load import Load

pytestmark = pytest.mark.stack

ARCHIVE_TIMEOUT = 5
# archive_timeout closes a WAL segment at most this long after it began; archiving it (pgBackRest,
# asynchronous) takes a moment more on a loaded 2-core machine.
ARCHIVE_SLACK = 3
PITR_ENVIRONMENT = {
    "PITR_ENABLED": "true",
    "PITR_ARCHIVE_TIMEOUT": str(ARCHIVE_TIMEOUT),
    "PITR_ARCHIVE_MAX_AGE_MINUTES": "0.25",
    # Images are archived into the blob store as they are stored (pytest's environment turns
    # this off for in-process tests; the drill needs it).
    "BACKUP_ARCHIVE_IMAGES": "true",
}


def start_with_pitr(stack) -> None:
    stack.env.update(PITR_ENVIRONMENT)
    stack.config = type(stack.config).from_environment(stack.env)
    stack.start(timeout=240)


def shop_connection(stack) -> psycopg.Connection:
    config = stack.config
    return psycopg.connect(
        host="127.0.0.1",
        port=config.postgres_port,
        user=config.postgres_user,
        password=config.postgres_password,
        dbname=config.postgres_db,
        autocommit=True,
        connect_timeout=5,
    )


def run_runner(stack, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ops.runner", *args],
        cwd=PROJECT_ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def media_names_with_hashes(stack) -> dict[str, str]:
    with shop_connection(stack) as conn:
        rows = conn.execute("SELECT image FROM catalog_productimage").fetchall()
    return {name: name.rsplit("/", 1)[-1].split(".")[0] for (name,) in rows}


def image_names_of(stack, slug: str) -> list[str]:
    with shop_connection(stack) as conn:
        rows = conn.execute(
            "SELECT i.image FROM catalog_productimage i JOIN catalog_product p ON p.id = i.product_id"
            " WHERE p.slug = %s",
            (slug,),
        ).fetchall()
    return [name for (name,) in rows]


def sha256_of(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_drill_destroy_the_data_directory_and_restore_to_that_instant(stack):
    start_with_pitr(stack)
    config = stack.config
    category_id = stack.add_staff_and_category()
    load = Load(stack.url, category_id)
    load.add_product()
    # A backup set stores the uploads in the blob store: the image deleted at T comes back from there.
    stack.manage("backup_now", "--no-upload")
    first_image = next(iter(media_names_with_hashes(stack)))

    with load:
        time.sleep(25)
        # An image uploaded during the load, after the backup set: only the continuous image
        # archive has it. Uploaded before T - archive_timeout - slack, so its row must come back.
        destroyed_at = datetime.now(UTC)
        horizon = destroyed_at - timedelta(seconds=ARCHIVE_TIMEOUT + ARCHIVE_SLACK)
        archived_only = [
            slug for slug, at in zip(load.products[1:], load.products_added[1:], strict=True) if at <= horizon
        ][-1]
        deleted_images = [first_image, *image_names_of(stack, archived_only)]
        # T: the database's data directory is destroyed (the server killed first), images deleted.
        postmaster = int((config.postgres_dir / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(config.postgres_dir)], check=True)
        for name in deleted_images:
            (config.data / "uploads" / name).unlink()
    committed = list(load.orders)
    assert len(committed) >= 10, (committed, load.errors)

    target = destroyed_at.isoformat(sep=" ")
    began = time.monotonic()
    restored = run_runner(stack, "restore", "--to", target, "--yes")
    restore_seconds = time.monotonic() - began
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "Point-in-time restore complete" in restored.stdout
    stack.wait_until_ready(180)

    must_be_back = [
        number
        for number, at in committed
        if at <= destroyed_at - timedelta(seconds=ARCHIVE_TIMEOUT + ARCHIVE_SLACK)
    ]
    with shop_connection(stack) as conn:
        present = {row[0] for row in conn.execute("SELECT number FROM orders_order")}
    missing = [number for number in must_be_back if number not in present]
    assert not missing, f"orders committed before T - {ARCHIVE_TIMEOUT} s are lost: {missing}"
    lost = [at for number, at in committed if number not in present]
    rpo = (destroyed_at - min(lost)).total_seconds() if lost else 0.0
    print(
        f"\nPITR drill: {len(committed)} orders, {len(lost)} lost, "
        f"RPO {rpo:.1f} s, restore {restore_seconds:.1f} s"
    )

    # The shop serves them (staff may see every order: a guest's session lists only its latest
    # ones), and every image the rows name.
    for number in must_be_back[-3:]:
        page = load.staff.get(f"{stack.url}/orders/{number}/")
        assert page.status_code == 200
        assert number in page.text
    restored_images = media_names_with_hashes(stack)
    assert set(deleted_images) <= set(restored_images), (deleted_images, restored_images)
    for name, sha256 in restored_images.items():
        path = config.data / "uploads" / name
        assert sha256_of(path) == sha256, name
        assert requests.get(f"{stack.url}/media/{name}", timeout=10).status_code == 200
    # It takes orders again (a new customer: the old cart, in Redis, may hold a product the
    # restore took back).
    customer = browser(stack.url)
    add_to_cart(customer, stack.url, 1, slug=load.products[0])
    assert place_order(customer, stack.url)


def readyz(stack) -> dict:
    return requests.get(f"{stack.url}/readyz", timeout=10).json()


def test_archiving_failure_is_visible_and_the_shop_keeps_taking_orders(stack):
    """The backup volume's repository unwritable: orders go on, /readyz (still 200), the metrics
    and the alert check say archiving is behind; it catches up once the volume is writable."""
    start_with_pitr(stack)
    category_id = stack.add_staff_and_category()
    load = Load(stack.url, category_id)
    load.add_product()
    assert readyz(stack)["pitr"]["archive"] == "ok"
    archive = stack.config.backups / "pgbackrest" / "archive"
    archive.chmod(0o000)  # pgBackRest runs as the postgres user: it can no longer write there
    try:
        with load:
            stack.wait_until(lambda: readyz(stack)["pitr"]["archive"] == "behind", 120)
        assert len(load.orders) >= 3, load.errors
        response = requests.get(f"{stack.url}/readyz", timeout=10)
        assert response.status_code == 200
        report = response.json()["pitr"]
        assert report["failed_count"] > 0
        assert "WAL segment(s) waiting" in report["archive_summary"]
        assert "pitr_archive" in response.json()["backup"]["alerts"]
        # /metrics answers gunicorn directly, never through nginx.
        metrics = requests.get(f"http://{stack.config.backend_addresses[0]}/metrics", timeout=10).text
        assert 'shop_backup_alert{alert="pitr_archive"} 1.0' in metrics
        mailed = stack.manage(
            "shell", "-c", "from shop.backups import alerts; print(alerts.check_and_notify())"
        )
        assert "WAL archiving (point-in-time recovery) is behind" in mailed
    finally:
        archive.chmod(0o750)
    stack.wait_until(lambda: readyz(stack)["pitr"]["archive"] == "ok", 120)

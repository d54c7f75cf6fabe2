"""Point-in-time recovery with repo2 on S3 (issue 12), on the Docker-less runner.

pgBackRest's S3 driver speaks HTTPS only: the S3 here is moto over HTTPS with a self-signed
certificate (tests/conftest.py `s3_tls_endpoint`), PITR_S3_VERIFY_TLS=false for pgBackRest and
AWS_CA_BUNDLE for the shop's own S3 client (backup sets, the image archive).
"""

import os
import shutil
import signal
import time
import uuid

import pytest
import requests

from tests.conftest import s3_client
from tests.shop_load import Load
from tests.stack.test_runner_pitr import (
    media_names_with_hashes,
    readyz,
    run_runner,
    sha256_of,
    shop_connection,
    start_with_pitr,
)

pytestmark = pytest.mark.stack

PREFIX = "shop/backups"


@pytest.fixture
def s3_stack(stack, s3_endpoint, s3_tls_endpoint):
    """The runner stack with BACKUP_S3_* on a fresh bucket behind the HTTPS endpoint."""
    bucket = f"pitr-{uuid.uuid4().hex[:12]}"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    stack.env.update(
        BACKUP_S3_BUCKET=bucket,
        BACKUP_S3_PREFIX=PREFIX,
        BACKUP_S3_ENDPOINT_URL=s3_tls_endpoint.url,
        BACKUP_S3_REGION="us-east-1",
        BACKUP_S3_ACCESS_KEY_ID="testing",
        BACKUP_S3_SECRET_ACCESS_KEY="testing",
        PITR_S3_VERIFY_TLS="false",
        AWS_CA_BUNDLE=str(s3_tls_endpoint.ca_file),
    )
    stack.bucket = bucket
    return stack


def repo2_keys(s3_endpoint, bucket: str, under: str) -> list[str]:
    """Object keys in repo2 under `<BACKUP_S3_PREFIX>/pgbackrest/<under>`."""
    return bucket_keys(s3_endpoint, bucket, f"{PREFIX}/pgbackrest/{under}")


def bucket_keys(s3_endpoint, bucket: str, prefix: str) -> list[str]:
    """Object keys under `prefix` (read over moto's HTTP side)."""
    client = s3_client(s3_endpoint)
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


def wal_segments(keys: list[str]) -> set[str]:
    """The WAL segment names among archive keys (`.../000000010000000000000003-<sha1>.lz4`)."""
    names = {key.rsplit("/", 1)[-1].split("-", 1)[0] for key in keys}
    return {name for name in names if len(name) == 24}


def repo1_segments(stack) -> set[str]:
    archive = stack.config.backups / "pgbackrest" / "archive"
    return {path.name.split("-", 1)[0] for path in archive.rglob("*-*") if len(path.name.split("-")[0]) == 24}


def current_wal(stack) -> str:
    with shop_connection(stack) as conn:
        return conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]


def switch_wal(stack) -> str:
    """Close the segment being written; the name of the newest one that holds WAL written so far."""
    with shop_connection(stack) as conn:
        return conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]


def in_repo2(s3_endpoint, bucket: str, segment: str) -> bool:
    """The segment (or a later one: after a restore the timeline differs) is archived in repo2."""
    names = wal_segments(repo2_keys(s3_endpoint, bucket, "archive/"))
    return any(name[8:] >= segment[8:] for name in names)


def order_numbers(stack) -> set[str]:
    with shop_connection(stack) as conn:
        return {row[0] for row in conn.execute("SELECT number FROM orders_order")}


@pytest.mark.timeout(900)
def test_repo2_gets_wal_and_the_full_backup_a_dead_s3_never_stops_orders_and_s3_alone_restores(
    s3_stack, s3_endpoint, s3_tls_endpoint
):
    """One stack (its start and stop cost two minutes here): WAL and the first full backup reach
    repo2 on S3; then S3 refuses connections: orders go on, /readyz stays 200 and says archiving
    is behind, with pgBackRest's word that repo2 is the one failing, while repo1 (the backup
    volume) keeps receiving the WAL; once S3 is back, archiving catches up. Last, the server's
    data directory, repo1, the blob store and the product images are destroyed: `restore --to
    latest` chooses repo2 and says why, fetches every image's blob from S3, and every order and
    image is back and served."""
    stack = s3_stack
    start_with_pitr(stack)  # the first full backup goes to both repositories
    backups = repo2_keys(s3_endpoint, stack.bucket, "backup/shop/")
    assert any(key.endswith("/backup.manifest") for key in backups), backups
    first_backup = readyz(stack)["pitr"]["last_physical_backup"]  # the monitoring knows it
    assert (first_backup["kind"], first_backup["ok"]) == ("full", True), first_backup
    category_id = stack.add_staff_and_category()
    load = Load(stack.url, category_id)
    load.add_product()
    with load:
        time.sleep(12)
    assert len(load.orders) >= 3, load.errors
    written = current_wal(stack)

    # Segments before the one being written are archived to S3 within archive_timeout and a moment.
    stack.wait_until(lambda: in_repo2(s3_endpoint, stack.bucket, written), 60)
    info = stack.manage("shell", "-c", "from shop.backups.pitr import pgbackrest; print(pgbackrest.info())")
    assert "'key': 2" in info, info
    stack.wait_until(lambda: readyz(stack)["pitr"]["archive"] == "ok", 60)

    products = load.products
    placed = list(load.orders)
    load = Load(stack.url, category_id)
    load.products = list(products)  # its next upload gets a slug not taken yet
    before = repo1_segments(stack)
    s3_tls_endpoint.stop()  # S3 down: connections refused
    try:
        with load:
            stack.wait_until(lambda: readyz(stack)["pitr"]["archive"] == "behind", 120)

            # pgBackRest retries S3 for a while (4 x io-timeout) before it fails the push, and
            # PostgreSQL counts the failure when its archive_command next asks. pgBackRest's
            # message lasts while its `.error` file does (the next async run removes it).
            told = []

            def failure_told() -> bool:
                report = readyz(stack)["pitr"]
                told.append(report)
                return report["failed_count"] > 0 and "pgBackRest: " in report["archive_summary"]

            stack.wait_until(failure_told, 150)
        assert len(load.orders) >= 3, load.errors
        response = requests.get(f"{stack.url}/readyz", timeout=10)
        assert response.status_code == 200
        report = response.json()["pitr"]
        assert report["archive"] == "behind"
        assert report["failed_count"] > 0
        assert "WAL segment(s) waiting" in report["archive_summary"]
        assert "repo2: [HostConnectError]" in told[-1]["archive_summary"], told[-1]
        assert "repo1" not in told[-1]["archive_summary"], told[-1]
        # repo1 (the backup volume) keeps receiving WAL meanwhile.
        assert repo1_segments(stack) - before, (before, report)
    finally:
        s3_tls_endpoint.start()
    stack.wait_until(lambda: readyz(stack)["pitr"]["archive"] == "ok", 180)
    placed += load.orders
    restore_from_s3_alone(stack, s3_endpoint, placed, load.staff)


def blobs_on_s3(s3_endpoint, bucket: str) -> set[str]:
    return {key.rsplit("/", 1)[-1] for key in bucket_keys(s3_endpoint, bucket, f"{PREFIX}/blobs/")}


def restore_from_s3_alone(stack, s3_endpoint, placed: list[tuple[str, object]], staff) -> None:
    """The server and the whole backup volume's part for it (repo1 and the blob store) are lost,
    with the product images in MEDIA_ROOT; S3 has it all (repo2, the blobs)."""
    # Images uploaded while S3 was down reach it at the image archive's next retry (30 s, then
    # doubling) or with the next backup set, the sweep: take one, so every blob is on S3 now.
    stack.manage("backup_now")
    images = media_names_with_hashes(stack)
    assert images
    assert set(images.values()) <= blobs_on_s3(s3_endpoint, stack.bucket), images
    last = switch_wal(stack)
    stack.wait_until(lambda: in_repo2(s3_endpoint, stack.bucket, last), 60)
    config = stack.config
    postmaster = int((config.postgres_dir / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGKILL)
    shutil.rmtree(config.postgres_dir)
    shutil.rmtree(config.backups / "pgbackrest")
    shutil.rmtree(config.backups / "blobs")
    for name in images:
        (config.data / "uploads" / name).unlink()

    forced = run_runner(stack, "restore", "--to", "latest", "--repo", "1", "--dry-run")
    assert forced.returncode != 0, forced.stdout
    assert "repo1 (the backup volume) (asked for with --repo 1) cannot serve it" in forced.stderr, (
        forced.stderr
    )
    began = time.monotonic()
    restored = run_runner(stack, "restore", "--to", "latest", "--yes")
    seconds = time.monotonic() - began
    assert restored.returncode == 0, restored.stdout + restored.stderr
    reason = "repository: repo2 (S3), because repo1 (the backup volume) cannot serve it (not usable: "
    assert reason in restored.stdout, restored.stdout
    assert "Point-in-time restore complete" in restored.stdout
    # The WAL replayed came from repo2 too (archive-get in the restore_command pgBackRest wrote).
    restore_command = (config.postgres_dir / "postgresql.auto.conf").read_text()
    assert "--repo=2 --stanza=shop archive-get" in restore_command, restore_command
    assert f"{len(images)} image(s) fetched from S3" in restored.stdout, restored.stdout
    stack.wait_until_ready(180)
    for name, sha256 in images.items():
        assert sha256_of(config.data / "uploads" / name) == sha256, name
        assert requests.get(f"{stack.url}/media/{name}", timeout=10).status_code == 200, name

    present = order_numbers(stack)
    assert len(placed) >= 6
    missing = [number for number, _ in placed if number not in present]
    assert not missing, f"orders archived to S3 are lost: {missing}"
    print(
        f"\nrestore from S3 alone: {len(placed)} orders and {len(images)} images (fetched from S3) back, "
        f"`restore --to latest` took {seconds:.1f} s"
    )
    for number, _ in placed[-3:]:
        page = staff.get(f"{stack.url}/orders/{number}/")
        assert page.status_code == 200
        assert number in page.text

    # repo1 was made again by the runner after the restore (stanza, a full backup), so the new
    # timeline's WAL reaches both repositories and archiving is not behind.
    assert "PITR: pgBackRest full backup to repo1 done" in restored.stdout, restored.stdout + restored.stderr
    assert list((config.backups / "pgbackrest" / "backup" / "shop").glob("*F/backup.manifest"))
    stack.wait_until(lambda: readyz(stack)["pitr"]["archive"] == "ok", 120)

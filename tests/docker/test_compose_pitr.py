"""Point-in-time recovery in the development compose stack, run for real (README "Point-in-time
recovery in compose"): PITR_ENABLED=true, WAL archived by the database through pgBackRest's TLS
server on the repository host, a full physical backup taken by the backup worker through the
database side's TLS server, then the drill: orders and an image before a time T, an order after
it, the database's data directory destroyed and the image deleted, `make pitr-restore TO=T`;
what was committed before T is back and served, what came after is not.

repo2 (S3) is not part of this test: pgBackRest reaches S3 over HTTPS only and the MinIO
stand-in speaks HTTP (the backup worker then leaves repo2 out and says so).
"""

import json
import os
import re
import shutil
import time
from datetime import UTC, datetime

import pytest
import requests

from tests.docker.compose_project import (
    BUILD_ON_HOST_NETWORK,
    DEVELOPMENT_FILES,
    ComposeProject,
    free_ports,
)
from tests.shop_http import (
    STAFF_PASSWORD,
    STAFF_USER,
    add_to_cart,
    assert_served_as_image,
    browser,
    form_errors,
    place_order,
    png_image,
    staff_session,
    upload_product,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1500), pytest.mark.usefixtures("docker_engine")]

# Short, so the test need not wait a minute for an idle segment to be shipped (default 60 s).
ARCHIVE_TIMEOUT = 10


@pytest.fixture(scope="module")
def stack():
    """The development stack with PITR on, in a fresh copy of the project after `make init`."""
    project = ComposeProject.fresh()
    project.run("make", "init")
    http, database, console, mail = free_ports(4)
    project.set_env(
        NGINX_HTTP_PORT=f"127.0.0.1:{http}",
        POSTGRES_PUBLISHED_PORT=str(database),
        MINIO_CONSOLE_PORT=str(console),
        MAILPIT_PORT=str(mail),
        PITR_ENABLED="true",
        PITR_ARCHIVE_TIMEOUT=str(ARCHIVE_TIMEOUT),
    )
    project.urls = {"http": f"http://127.0.0.1:{http}"}  # type: ignore[attr-defined]
    project.state = {}  # type: ignore[attr-defined]
    began = time.monotonic()
    try:
        # Two images: the shop's (migrate) and the database's (database/Dockerfile).
        project.with_files(["docker-compose.yml", str(BUILD_ON_HOST_NETWORK)]).compose("build", timeout=1800)
        project.state["build seconds"] = round(time.monotonic() - began)
        project.state["up seconds"] = round(project.up())
        yield project
    finally:
        project.compose(
            "--profile", "pitr", "down", "--volumes", "--remove-orphans", check=False, timeout=600
        )
        for image in ("app", "database"):
            project.run("docker", "image", "rm", f"{project.name}-{image}:latest", check=False)
        # The database's files belong to its container user: removed as root (the tests' user).
        project.run("rm", "-rf", str(project.root), check=False)
        print(f"\ncompose PITR timings (s): {project.state}")


def psql(project: ComposeProject, query: str, database: str = "postgres") -> str:
    """As the superuser, in the maintenance database (the shop's own holds only the shop's tables:
    the backup role must be able to read every one)."""
    user = project.env["POSTGRES_USER"]
    return project.exec("database", "psql", "-U", user, "-d", database, "-Atc", query).stdout.strip()


def pgbackrest_info(project: ComposeProject) -> dict:
    result = project.exec(
        "backup", "sh", "-c", 'pgbackrest --config="$PITR_PGBACKREST_CONFIG" --stanza=shop --output=json info'
    )
    return json.loads(result.stdout)[0]


def wait_for(condition, timeout: float, message):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(2)
    raise AssertionError(message() if callable(message) else message)


def archived_wal_after_switch(project: ComposeProject) -> str:
    """Close the current WAL segment and wait until the archiver has shipped it."""
    segment = psql(project, "SELECT pg_walfile_name(pg_switch_wal())")
    archiver = "SELECT * FROM pg_stat_archiver"
    logs = ("database", "pgbackrest-repo")
    wait_for(
        lambda: psql(project, "SELECT last_archived_wal FROM pg_stat_archiver") >= segment,
        60,
        lambda: f"{segment}: not archived:\n{psql(project, archiver)}\n{project.logs(*logs)}",
    )
    return segment


def test_wal_is_archived_over_tls_and_the_backup_worker_takes_a_full_backup(stack):
    assert psql(stack, "SHOW archive_mode") == "on"
    assert psql(stack, "SHOW archive_timeout") == f"{ARCHIVE_TIMEOUT}s"
    for service in ("pgbackrest-db", "pgbackrest-repo"):
        assert stack.container(service)["State"]["Health"]["Status"] == "healthy", service

    # A write, then nothing: its segment is still closed and shipped within a few timeouts (the
    # wal-switch service; plus PostgreSQL's own 60 s pause after the failures before the stanza).
    before = int(psql(stack, "SELECT archived_count FROM pg_stat_archiver"))
    psql(stack, "CREATE TABLE pitr_idle_probe (n int); INSERT INTO pitr_idle_probe VALUES (1)")
    wait_for(
        lambda: int(psql(stack, "SELECT archived_count FROM pg_stat_archiver")) > before,
        ARCHIVE_TIMEOUT * 3 + 60,
        lambda: f"nothing archived within archive_timeout:\n{stack.logs('database', 'pgbackrest-repo')}",
    )

    # The beat task's way: the backups queue, run by the backup worker (the repository host).
    began = time.monotonic()
    stack.shell(
        "from shop.backups.tasks import pitr_backup; "
        "pitr_backup.apply_async(args=['full'], queue='backups'); print('sent')"
    )
    info = wait_for(
        lambda: (found := pgbackrest_info(stack)).get("backup") and found,
        300,
        lambda: f"no physical backup:\n{stack.logs('backup', 'pgbackrest-db', tail=80)}",
    )
    stack.state["full backup seconds"] = round(time.monotonic() - began)
    assert [backup["type"] for backup in info["backup"]] == ["full"]
    assert info["status"]["code"] == 0, info["status"]
    archive = info["archive"][0]
    assert archive["min"]
    assert archive["max"] >= info["backup"][0]["archive"]["stop"]
    # In repo1 on the backup volume, owned by the shop's user (the backup worker and pgbackrest-repo).
    repository = stack.backups / "pgbackrest"
    assert (repository / "backup" / "shop" / info["backup"][0]["label"]).is_dir()
    assert {path.stat().st_uid for path in repository.rglob("*")} == {int(stack.env["APP_UID"])}


def test_drill_destroyed_database_restored_to_a_time_with_its_image(stack):
    base = stack.urls["http"]
    stack.manage("seed_demo")
    stack.manage(
        "createsuperuser", "--noinput", "--username", STAFF_USER, "--email", "staff@example.com",
        env={"DJANGO_SUPERUSER_PASSWORD": STAFF_PASSWORD},
    )  # fmt: skip
    category = stack.shell("from shop.catalog.models import Category; print(Category.objects.first().pk)")
    uploads = stack.data / "uploads"
    before_upload = set(uploads.rglob("*.png"))
    uploaded = upload_product(staff_session(base), base, category, ("drill.png", png_image(), "image/png"))
    assert uploaded.status_code == 302, form_errors(uploaded.text)
    image = next(path for path in uploads.rglob("*.png") if path not in before_upload)
    image_url = "/media/" + image.relative_to(uploads).as_posix()
    # The image's blob reaches the blob store with a backup set (continuous image archiving is
    # issue 12 item 2's own work).
    stack.manage("backup_now", service="backup")

    customer = browser(base)
    add_to_cart(customer, base, quantity=1)
    kept_order = place_order(customer, base)
    time.sleep(2)
    target = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S+00")
    time.sleep(2)
    add_to_cart(customer, base, quantity=1)
    lost_order = place_order(customer, base)
    archived_wal_after_switch(stack)

    # The disaster: the database's data directory destroyed, the image file gone.
    stack.compose("stop", "database")
    postgres = stack.data / "postgres"
    for entry in postgres.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    image.unlink()

    began = time.monotonic()
    restored = stack.run(
        "make", "pitr-restore", f"TO={target}", "YES=1",
        env={"COMPOSE_FILE": os.pathsep.join(DEVELOPMENT_FILES)}, check=False, timeout=1200,
    )  # fmt: skip
    stack.state["pitr-restore seconds"] = round(time.monotonic() - began)
    assert restored.returncode == 0, f"{restored.stdout[-5000:]}\n{restored.stderr[-3000:]}"
    assert f"the database is at {target}" in restored.stdout
    brought = re.search(r"(\d+) image file\(s\) in place", restored.stdout)
    assert brought, restored.stdout[-5000:]
    assert int(brought.group(1)) >= 1

    # Committed before T: back and served. After T: gone. The image is back with its bytes.
    assert customer.get(f"{base}/orders/{kept_order}/", timeout=10).status_code == 200
    assert customer.get(f"{base}/orders/{lost_order}/", timeout=10).status_code == 404
    assert image.is_file()
    assert_served_as_image(requests.get(f"{base}{image_url}", timeout=10))
    # The destroyed directory's (empty) remains are kept for rollback, the restored cluster is live
    # on a new timeline, and archiving goes on from there.
    kept = list((postgres / "pitr").glob("before-*"))
    assert len(kept) == 1, kept
    assert not list((postgres / "pitr").glob("restore-*"))
    segment = archived_wal_after_switch(stack)
    assert segment.startswith("00000002"), segment

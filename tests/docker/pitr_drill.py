"""Point-in-time recovery in a compose stack, run for real (README "Point-in-time recovery in
compose"): the checks and the drill of issue 12, run on the production stack by
tests/docker/test_compose_stacks.py (PITR is on by default there).

WAL is archived by the database through pgBackRest's TLS server on the repository host, to repo1
(the backup volume) and repo2 (S3: the MinIO stand-in behind the TLS proxy of
tests/docker/compose-s3-tls.yml, its certificate verified against the test's CA through
PITR_S3_CA_FILE); a full physical backup goes to both, taken by the backup worker through the
database side's TLS server. Then the drill: orders placed and product images uploaded
continuously through nginx (tests/shop_load.py); at a time T the database killed, its data
directory destroyed and images uploaded during the load deleted; `make pitr-restore TO=T`.
Every order and image committed up to one archive timeout (+ slack) before T is back and served,
nothing committed after T is; the measured RPO and the restore's duration are printed.
"""

import hashlib
import json
import os
import re
import shutil
import time
from datetime import UTC, datetime, timedelta

from tests.docker.compose_project import S3_CA_IN_CONTAINERS, ComposeProject, wait_for
from tests.shop_http import add_to_cart, assert_served_as_image, browser, place_order, staff_session
from tests.shop_load import Load

# Short, so the test need not wait a minute for an idle segment to be shipped (default 60 s).
ARCHIVE_TIMEOUT = 10
# wal-switch closes a segment at most ARCHIVE_TIMEOUT s after it began; pushing it to the
# repository host over TLS (and an image's archive task on the backup worker) takes a moment
# more on a loaded machine. What was answered this long before T must come back.
ARCHIVE_SLACK = 5
PROMISED_WITHIN = timedelta(seconds=ARCHIVE_TIMEOUT + ARCHIVE_SLACK)
# Orders and uploads through nginx before the disaster.
LOAD_SECONDS = 25


def psql(project: ComposeProject, query: str, database: str = "postgres") -> str:
    """As the superuser, in the maintenance database (the shop's own holds only the shop's tables:
    the backup role must be able to read every one)."""
    user = project.env["POSTGRES_USER"]
    return project.exec("database", "psql", "-U", user, "-d", database, "-Atc", query).stdout.strip()


def pgbackrest_info(project: ComposeProject, repo: int) -> dict:
    """`pgbackrest info` of one repository, asked on the repository host (the backup worker)."""
    result = project.exec(
        "backup", "sh", "-c",
        f'pgbackrest --config="$PITR_PGBACKREST_CONFIG" --stanza=shop --repo={repo} --output=json info',
    )  # fmt: skip
    return json.loads(result.stdout)[0]


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


def check_archiving_and_a_full_backup_in_both_repositories(stack: ComposeProject) -> None:
    """archive_mode on, a write archived without a manual switch (wal-switch), and the beat task's
    full backup in repo1 (owned by the shop's user) and in repo2 on S3 over verified HTTPS."""
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
    # One backup per repository (pgBackRest's backup writes to one): repo1, then repo2 on S3.
    infos = {}
    for repo in (1, 2):
        infos[repo] = wait_for(
            lambda repo=repo: (found := pgbackrest_info(stack, repo)).get("backup") and found,
            300,
            lambda repo=repo: f"no backup in repo{repo}:\n{stack.logs('backup', 'pgbackrest-db', tail=80)}",
        )
    stack.state["full backup seconds (both repositories)"] = round(time.monotonic() - began)
    for repo, info in infos.items():
        assert [backup["type"] for backup in info["backup"]] == ["full"], repo
        assert [backup["database"]["repo-key"] for backup in info["backup"]] == [repo]
        assert info["status"]["code"] == 0, (repo, info["status"])
        # The WAL the backup needs, and what the server archived since, is in each repository.
        archive = info["archive"][0]
        assert archive["database"]["repo-key"] == repo
        assert archive["min"], repo
        assert archive["max"] >= info["backup"][0]["archive"]["stop"], repo
    # repo2 is the S3 bucket, reached over HTTPS with the certificate verified against its CA.
    settings = stack.exec("backup", "sh", "-c", 'cat "$PITR_PGBACKREST_CONFIG"').stdout
    assert "repo2-type=s3" in settings
    assert f"repo2-storage-ca-file={S3_CA_IN_CONTAINERS}" in settings
    assert "verify-tls" not in settings
    info = infos[1]
    # In repo1 on the backup volume, owned by the shop's user (the backup worker and pgbackrest-repo).
    repository = stack.backups / "pgbackrest"
    assert (repository / "backup" / "shop" / info["backup"][0]["label"]).is_dir()
    assert {path.stat().st_uid for path in repository.rglob("*")} == {int(stack.env["APP_UID"])}


def image_names_by_product(project: ComposeProject) -> dict[str, list[str]]:
    """{slug: [image names]} of the load's products, from the live database."""
    rows = psql(
        project,
        "SELECT p.slug, i.image FROM catalog_productimage i JOIN catalog_product p ON p.id = i.product_id"
        " WHERE p.slug LIKE 'pitr-mug-%'",
        database=project.env["POSTGRES_DB"],
    )
    names: dict[str, list[str]] = {}
    for line in filter(None, rows.splitlines()):
        slug, name = line.split("|")
        names.setdefault(slug, []).append(name)
    return names


def drill(stack: ComposeProject, base: str, files: list[str]) -> None:
    """Orders and product uploads go on through nginx; at T the database is killed, its data
    directory destroyed and images uploaded during the load deleted; `make pitr-restore TO=T`.
    Every order answered and every image uploaded before T - archive timeout - slack is back
    (the images from the continuous image archive only: no backup set was made since), the shop
    serves them, and it takes orders again. The staff user and a category must exist; `files`:
    the stack's compose files, for `make pitr-restore`."""
    category = stack.shell("from shop.catalog.models import Category; print(Category.objects.first().pk)")
    uploads = stack.data / "uploads"
    postgres = stack.data / "postgres"
    load = Load(base, category)
    load.add_product()

    with load:
        time.sleep(LOAD_SECONDS)
        # At least one product uploaded during the load (not the first) old enough to be promised.
        wait_for(
            lambda: any(at <= datetime.now(UTC) - PROMISED_WITHIN for at in load.products_added[1:]),
            60,
            lambda: f"no product uploaded during the load: {load.products} {load.errors[-5:]}",
        )
        stored = image_names_by_product(stack)
        # T, whole seconds (it goes on a command line): the disaster. The server killed (no
        # shutdown checkpoint, no last WAL switch), its data directory destroyed, images deleted.
        destroyed_at = datetime.now(UTC).replace(microsecond=0)
        stack.compose("kill", "database")
        horizon = destroyed_at - PROMISED_WITHIN
        promised_products = [
            slug for slug, at in zip(load.products, load.products_added, strict=False) if at <= horizon
        ]
        for entry in postgres.iterdir():
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        deleted_images = [name for slug in promised_products for name in stored[slug]]
        for name in deleted_images:
            (uploads / name).unlink()
    assert not stack.container("database")["State"]["Running"]
    committed = list(load.orders)
    assert len(committed) >= 10, (committed, load.errors[-5:])
    assert set(promised_products) - {load.products[0]}, (load.products, load.products_added)

    target = destroyed_at.strftime("%Y-%m-%d %H:%M:%S+00")
    began = time.monotonic()
    restored = stack.run(
        "make", "pitr-restore", f"TO={target}", "YES=1",
        env={"COMPOSE_FILE": os.pathsep.join(files)}, check=False, timeout=1200,
    )  # fmt: skip
    restore_seconds = time.monotonic() - began
    stack.state["pitr-restore seconds"] = round(restore_seconds)
    assert restored.returncode == 0, f"{restored.stdout[-5000:]}\n{restored.stderr[-3000:]}"
    reached = re.search(r"the database is at (.+?); the previous cluster", restored.stdout)
    assert reached, restored.stdout[-5000:]
    brought = re.search(r"(\d+) image file\(s\) in place", restored.stdout)
    assert brought, restored.stdout[-5000:]
    assert int(brought.group(1)) >= len(deleted_images)

    # Every order answered before the horizon is back; nothing committed after T is.
    shop_database = stack.env["POSTGRES_DB"]
    present = set(psql(stack, "SELECT number FROM orders_order", database=shop_database).split())
    must_be_back = [number for number, at in committed if at <= horizon]
    missing = [number for number in must_be_back if number not in present]
    assert not missing, f"orders answered before T - {PROMISED_WITHIN} are lost: {missing}"
    newest = psql(stack, "SELECT max(created_at) FROM orders_order", database=shop_database)
    assert datetime.fromisoformat(newest) <= destroyed_at, (newest, target)
    lost = [at for number, at in committed if number not in present]
    rpo = (destroyed_at - min(lost)).total_seconds() if lost else 0.0
    stack.state["RPO seconds"] = round(rpo, 1)
    print(
        f"\ncompose PITR drill: {len(committed)} orders and {len(load.products)} products in "
        f"{LOAD_SECONDS}+ s, {len(lost)} orders lost, RPO {rpo:.1f} s (archive timeout "
        f"{ARCHIVE_TIMEOUT} s); {len(deleted_images)} image(s) deleted at T; make pitr-restore "
        f"{restore_seconds:.1f} s; the database is at {reached.group(1)}"
    )

    # The shop serves them: the orders (staff may see every one), the deleted images with their
    # bytes (named by their SHA-256) and nginx's headers for uploads.
    for number in must_be_back[-3:]:
        page = load.staff.get(f"{base}/orders/{number}/", timeout=10)
        assert page.status_code == 200
        assert number in page.text
    for name in deleted_images:
        path = uploads / name
        assert path.is_file(), name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == name.rsplit("/", 1)[-1].split(".")[0], name
        assert_served_as_image(load.customer.get(f"{base}/media/{name}", timeout=10))
    # It takes orders again (a new customer: the old cart, in Redis, may name a product the
    # restore took back).
    customer = browser(base)
    add_to_cart(customer, base, 1, slug=load.products[0])
    after_restore = place_order(customer, base)
    assert after_restore
    stack.state["order after the restore"] = after_restore
    # The destroyed directory's (empty) remains are kept for rollback, the restored cluster is live
    # on a new timeline, and archiving goes on from there.
    kept = list((postgres / "pitr").glob("before-*"))
    assert len(kept) == 1, kept
    assert not list((postgres / "pitr").glob("restore-*"))
    segment = archived_wal_after_switch(stack)
    assert segment.startswith("00000002"), segment
    for repo in (1, 2):
        assert pgbackrest_info(stack, repo)["archive"][-1]["max"] >= segment, repo


def restore_from_s3_alone(stack: ComposeProject, base: str, files: list[str]) -> None:
    """After the drill: the backup volume's repository lost too (repo1 moved away);
    `make pitr-restore TO=latest`, with no REPO, chooses repo2 and restores from S3 alone, and the
    order placed after the drill's restore (its WAL archived to both repositories by then) is back
    and served."""
    number = stack.state["order after the restore"]
    repo1 = stack.backups / "pgbackrest"
    repo1.rename(stack.backups / "pgbackrest.lost")
    began = time.monotonic()
    restored = stack.run(
        "make", "pitr-restore", "TO=latest", "YES=1",
        env={"COMPOSE_FILE": os.pathsep.join(files)}, check=False, timeout=1200,
    )  # fmt: skip
    stack.state["pitr-restore from repo2 seconds"] = round(time.monotonic() - began)
    assert restored.returncode == 0, f"{restored.stdout[-5000:]}\n{restored.stderr[-3000:]}"
    assert "repository: repo2 (S3), because repo1 (the backup volume) cannot serve it" in restored.stdout, (
        restored.stdout[-3000:]
    )
    assert "reading repo2, S3 bucket" in restored.stdout, restored.stdout[-3000:]
    # (The restarted stack has a new repo1 by now: the backup worker creates the stanza at start.)
    assert (stack.backups / "pgbackrest.lost").is_dir()
    numbers = psql(stack, "SELECT number FROM orders_order", database=stack.env["POSTGRES_DB"]).split()
    assert number in numbers, f"{number} is not back from repo2:\n{restored.stdout[-3000:]}"
    page = staff_session(base).get(f"{base}/orders/{number}/", timeout=10)
    assert page.status_code == 200
    assert number in page.text

"""Both compose stacks, built and run for real: development (`docker compose up`) and production
(`-f docker-compose.yml -f docker-compose.prod.yml`), in a fresh copy of the project after
`make init`, on free loopback ports. The tests run in order on one checkout: the production
stack finds the development stack's data, as it would on a server that was tried out first.
The production stack's S3 is MinIO behind a TLS proxy (compose-prod-s3.yml, compose-s3-tls.yml),
and point-in-time recovery, on by default there, ends it: archiving to both repositories and the
drill of issue 12 (tests/docker/pitr_drill.py).
"""

import os
import re
import socket
import stat
import subprocess
import time

import pytest
import requests

from tests.docker import pitr_drill
from tests.docker.compose_project import (
    APP_SERVICES,
    BUILD_ON_HOST_NETWORK,
    PRODUCTION_FILES,
    S3_CA_IN_CONTAINERS,
    ComposeProject,
    free_ports,
    make_s3_tls_certificate,
    wait_for,
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

pytestmark = [
    pytest.mark.docker,
    pytest.mark.timeout(1500),
    pytest.mark.usefixtures("docker_engine"),
    # The production stack's certificate is the test's own, self-signed.
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]

CUSTOMER_EMAIL = "customer@example.com"
CHECK_IMAGE = "from shop.catalog.models import ProductImage; "


@pytest.fixture(scope="module")
def project():
    """A fresh checkout after `make init`, its ports chosen, the shop image built once."""
    project = ComposeProject.fresh()
    project.run("make", "init")
    http, https, database, console, mail = free_ports(5)
    project.set_env(
        NGINX_HTTP_PORT=f"127.0.0.1:{http}",
        NGINX_HTTPS_PORT=f"127.0.0.1:{https}",
        SHOP_HTTPS_PORT=str(https),
        POSTGRES_PUBLISHED_PORT=str(database),
        MINIO_CONSOLE_PORT=str(console),
        MAILPIT_PORT=str(mail),
        DJANGO_CSRF_TRUSTED_ORIGINS=f"https://localhost:{https}",
    )
    project.urls = {  # type: ignore[attr-defined]
        "http": f"http://127.0.0.1:{http}",
        "https": f"https://localhost:{https}",
        "mail": f"http://127.0.0.1:{mail}",
        "database_port": database,
    }
    project.state = {}  # type: ignore[attr-defined]  # what one test leaves for the next
    builder = project.with_files(["docker-compose.yml", str(BUILD_ON_HOST_NETWORK)])
    began = time.monotonic()
    builder.compose("build", timeout=1800)
    project.state["build seconds"] = time.monotonic() - began
    try:
        yield project
    finally:
        for files in (PRODUCTION_FILES, project.files):
            project.with_files(files).compose(
                "--profile", "pitr", "down", "--volumes", "--remove-orphans", check=False, timeout=300
            )
        # Both images the stack builds: the shop's and the database's (database/Dockerfile).
        project.run(
            "docker",
            "image",
            "rm",
            f"{project.name}-app:latest",
            f"{project.name}-database:latest",
            check=False,
        )
        project.run("rm", "-rf", str(project.root), check=False)
        print(f"\ncompose stack timings (s): {project.state}")


@pytest.fixture(scope="module")
def dev(project):
    project.state["dev up seconds"] = project.up()
    return project


@pytest.fixture(scope="module")
def prod(project):
    """The production stack on the same data, the development stack stopped first."""
    project.down()
    (project.root / "nginx" / "ssl").mkdir(exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-keyout", str(project.root / "nginx/ssl/privkey.pem"),
         "-out", str(project.root / "nginx/ssl/fullchain.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    # nginx does not run as root: its key must be readable by APP_UID, as the README says.
    os.chown(project.root / "nginx/ssl/privkey.pem", int(project.env["APP_UID"]), int(project.env["APP_GID"]))
    make_s3_tls_certificate(project.root)
    # PITR_ENABLED is not set: production's default (on). A short archive timeout for the drill.
    assert "PITR_ENABLED" not in project.env
    project.set_env(
        DJANGO_DEBUG="false",
        BACKUP_S3_BUCKET="shop-backups",
        BACKUP_S3_ENDPOINT_URL="https://s3-tls:9443",
        BACKUP_S3_ACCESS_KEY_ID="prod-test-key",
        BACKUP_S3_SECRET_ACCESS_KEY=project.env["MINIO_ROOT_PASSWORD"],
        PITR_ARCHIVE_TIMEOUT=str(pitr_drill.ARCHIVE_TIMEOUT),
        PITR_S3_CA_FILE=S3_CA_IN_CONTAINERS,
    )
    production = project.with_files(PRODUCTION_FILES)
    production.urls, production.state = project.urls, project.state  # type: ignore[attr-defined]
    project.state["prod up seconds"] = production.up()
    return production


def started_at(project: ComposeProject, service: str) -> str:
    return project.container(service)["State"]["StartedAt"]


def new_files(directory, before: set) -> list:
    return [path for path in directory.rglob("*") if path.is_file() and path not in before]


# --- development ------------------------------------------------------------------------------


def test_development_builds_once_and_starts_in_order(dev):
    images = {dev.container(name)["Image"] for name in APP_SERVICES}
    assert len(images) == 1, "every shop service runs the one image built"
    built = dev.run("docker", "image", "ls", "--quiet", f"{dev.name}-app").stdout.split()
    assert len(built) == 1

    # Nothing serves before the migrations completed.
    migrate = dev.container("migrate")["State"]
    assert migrate["ExitCode"] == 0
    for name in ("backend", "worker", "backup", "beat"):
        assert started_at(dev, name) > migrate["FinishedAt"], f"{name} started before migrate finished"
    for name in ("database", "redis", "backend", "worker", "backup", "beat", "nginx"):
        assert dev.container(name)["State"]["Health"]["Status"] == "healthy", name

    # No root-owned directory made by Docker inside the checkout (the source is mounted on /app).
    assert not (dev.root / "data" / "beat").exists()
    owners = {path: path.stat().st_uid for path in (dev.root / "data").iterdir()}
    assert all(uid != 0 for path, uid in owners.items() if path.name not in ("postgres", "redis")), owners

    home = requests.get(f"{dev.urls['http']}/", timeout=10)
    assert home.status_code == 200
    assert home.headers["Server"] == "nginx"


def test_development_shop_upload_order_mail_and_backup(dev):
    base = dev.urls["http"]
    dev.manage("seed_demo")
    assert re.search(r'href="/product/[^"]+/"', requests.get(f"{base}/", timeout=10).text)
    dev.manage(
        "createsuperuser", "--noinput", "--username", STAFF_USER, "--email", "staff@example.com",
        env={"DJANGO_SUPERUSER_PASSWORD": STAFF_PASSWORD},
    )  # fmt: skip

    # A staff user uploads an image through nginx: it lands in DATA_PATH/uploads, owned by APP_UID.
    uploads = dev.data / "uploads"
    before = set(uploads.rglob("*"))
    category = dev.shell("from shop.catalog.models import Category; print(Category.objects.first().pk)")
    staff = staff_session(base)
    uploaded = upload_product(staff, base, category, ("front.png", png_image(), "image/png"))
    assert uploaded.status_code == 302, form_errors(uploaded.text)
    stored = [path for path in new_files(uploads, before) if path.suffix == ".png"]
    assert len(stored) == 1, stored
    assert stored[0].stat().st_uid == int(dev.env["APP_UID"])
    image_url = "/media/" + stored[0].relative_to(uploads).as_posix()
    assert_served_as_image(requests.get(f"{base}{image_url}", timeout=10))

    # An order, whose confirmation mail reaches the mail catcher.
    customer = browser(base)
    add_to_cart(customer, base, quantity=2)
    order = place_order(customer, base)
    add_to_cart(customer, base, quantity=1)  # a cart that must survive down/up
    mails = wait_for(
        lambda: CUSTOMER_EMAIL in requests.get(f"{dev.urls['mail']}/api/v1/messages", timeout=5).text,
        60,
        f"no confirmation mail in mailpit:\n{dev.logs('worker')}",
    )
    assert mails

    # A backup set in BACKUP_PATH, private to its owner, and its copy in the S3 (MinIO).
    set_id = dev.manage("backup_now").stdout.strip().splitlines()[-1]
    directory = dev.backups / set_id
    assert (directory / "db.dump").stat().st_size > 0
    assert stat.S_IMODE(dev.backups.stat().st_mode) & 0o027 == 0, oct(dev.backups.stat().st_mode)
    for path in [directory, *directory.iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) & 0o027 == 0, f"{path}: {oct(path.stat().st_mode)}"
    listing = dev.manage("list_backups", "--source", "s3").stdout
    assert set_id in listing, listing

    dev.state.update(order=order, image_url=image_url, customer=customer, image_path=stored[0])


def test_development_data_survives_down_and_up(dev):
    base, state = dev.urls["http"], dev.state
    dev.down()
    dev.up()
    customer = state["customer"]
    order_page = customer.get(f"{base}/orders/{state['order']}/", timeout=10)
    assert order_page.status_code == 200
    assert state["order"] in order_page.text
    assert_served_as_image(requests.get(f"{base}{state['image_url']}", timeout=10))
    cart = customer.get(f"{base}/cart/", timeout=10)
    assert "Stack Mug" in cart.text, "the cart (Redis AOF) did not survive"


def test_development_restore_brings_back_a_deleted_order_and_image(dev):
    base, state = dev.urls["http"], dev.state
    backend_started = started_at(dev, "backend")
    dev.shell(
        "from shop.orders.models import Order; "
        f"Order.objects.filter(number='{state['order']}').delete(); "
        + CHECK_IMAGE
        + "ProductImage.objects.all().delete()"
    )
    wait_for(lambda: not state["image_path"].exists(), 30, "the image file was not deleted after commit")
    assert requests.get(f"{base}{state['image_url']}", timeout=10).status_code == 404

    restored = dev.manage("restore_backup", "--latest", "--yes")
    assert "Restored" in restored.stdout, restored.stdout

    assert state["customer"].get(f"{base}/orders/{state['order']}/", timeout=10).status_code == 200
    assert_served_as_image(requests.get(f"{base}{state['image_url']}", timeout=10))
    assert started_at(dev, "backend") == backend_started, "served again without restarting anything"


def test_a_killed_backend_comes_back(dev):
    before = dev.container("backend")
    subprocess.run(["kill", "-KILL", str(before["State"]["Pid"])], check=True)
    state = dev.wait_healthy("backend", timeout=180)
    assert dev.container("backend")["RestartCount"] > before["RestartCount"]
    assert state["StartedAt"] > before["State"]["StartedAt"]
    assert requests.get(f"{dev.urls['http']}/", timeout=10).status_code == 200


def test_make_init_stops_when_the_volumes_point_at_another_data_path(dev):
    """Docker keeps a bind volume's directory from its first `up`: a changed DATA_PATH must
    not silently run on the old data."""
    original = dev.env["DATA_PATH"]
    dev.set_env(DATA_PATH=f"{original}-moved")
    try:
        result = dev.run("make", "init", check=False)
    finally:
        dev.set_env(DATA_PATH=original)
    assert result.returncode != 0
    assert f"{dev.name}_postgres_data is bound to {original}/postgres" in result.stderr
    assert "docker compose down --volumes" in result.stderr
    assert dev.run("make", "init").returncode == 0


# --- production -------------------------------------------------------------------------------


@pytest.mark.parametrize("secret", ["DJANGO_SECRET_KEY", "POSTGRES_PASSWORD", "BACKUP_S3_SECRET_ACCESS_KEY"])
def test_production_refuses_to_start_without_a_secret(prod, secret):
    assert prod.compose("config", "--quiet", check=False).returncode == 0  # complete: fine
    result = prod.compose("up", "--detach", check=False, env={secret: ""})
    assert result.returncode != 0
    assert f"required variable {secret} is missing a value" in result.stderr


def test_production_https_redirect_and_closed_ports(prod):
    https, http = prod.urls["https"], prod.urls["http"]
    page = browser(https).get(f"{https}/", timeout=10)
    assert page.status_code == 200
    assert "max-age=" in page.headers["Strict-Transport-Security"]
    redirect = requests.get(f"{http}/cart/?x=1", allow_redirects=False, timeout=10)
    assert redirect.status_code == 301
    https_port = https.rsplit(":", 1)[1]
    assert redirect.headers["Location"] == f"https://127.0.0.1:{https_port}/cart/?x=1"

    for service in ("database", "redis"):
        bindings = prod.container(service)["HostConfig"]["PortBindings"] or {}
        assert bindings == {}, f"{service} is published: {bindings}"
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", prod.urls["database_port"])) != 0


def root_processes(project: ComposeProject, container_id: str) -> dict[str, str]:
    """pid -> command line of the container's processes that run as root."""
    lines = project.run("docker", "top", container_id, "-eo", "pid,uid,args").stdout.splitlines()[1:]
    assert lines
    return {pid: args for pid, uid, args in (line.split(None, 2) for line in lines) if uid == "0"}


def test_production_containers_are_not_root_and_read_only(prod):
    for service in ("database", "redis", *APP_SERVICES[1:], "nginx"):
        container = prod.container(service)
        assert container["HostConfig"]["ReadonlyRootfs"] is True, service
        # A healthcheck's probe (pg_isready, redis-cli) lives for milliseconds as the image's
        # user; what runs the service lives on. Root processes seen in three looks, a second
        # apart, are the service's.
        looks = []
        for _ in range(3):
            looks.append(root_processes(prod, container["Id"]))
            time.sleep(1)
        lasting = set(looks[0]).intersection(*looks[1:])
        assert not lasting, f"{service} runs as root: {[looks[0][pid] for pid in lasting]}"


def test_production_upload_backup_verify_and_full_restore(prod):
    base = prod.urls["https"]
    uploads = prod.data / "uploads"
    before = set(uploads.rglob("*"))
    category = prod.shell("from shop.catalog.models import Category; print(Category.objects.first().pk)")
    staff = staff_session(base)
    uploaded = upload_product(staff, base, category, ("back.png", png_image(), "image/png"), slug="prod-mug")
    assert uploaded.status_code == 302, form_errors(uploaded.text)
    stored = [path for path in new_files(uploads, before) if path.suffix == ".png"]
    assert len(stored) == 1
    image_url = "/media/" + stored[0].relative_to(uploads).as_posix()
    assert_served_as_image(browser(base).get(f"{base}{image_url}", timeout=10))

    set_id = prod.manage("backup_now").stdout.strip().splitlines()[-1]
    assert set_id in prod.manage("list_backups", "--source", "s3").stdout
    verified = prod.manage("verify_backup", "--latest", "--deep", service="backup")
    assert verified.returncode == 0

    prod.shell(
        "from shop.catalog.models import Product; Product.objects.filter(slug='prod-mug').delete(); "
        + CHECK_IMAGE
        + "ProductImage.objects.all().delete()"
    )
    wait_for(lambda: not stored[0].exists(), 30, "the image file was not deleted after commit")
    restored = prod.manage("restore_backup", "--latest", "--yes")
    assert "Restored" in restored.stdout, restored.stdout
    assert browser(base).get(f"{base}/product/prod-mug/", timeout=10).status_code == 200
    assert_served_as_image(browser(base).get(f"{base}{image_url}", timeout=10))


# --- production: point-in-time recovery (on by default) ---------------------------------------


def test_production_archives_wal_and_takes_a_full_backup_in_both_repositories(prod):
    began = time.monotonic()
    pitr_drill.check_archiving_and_a_full_backup_in_both_repositories(prod)
    prod.state["pitr archiving and full backup seconds"] = round(time.monotonic() - began)


def test_production_drill_destroyed_database_restored_to_a_time_with_its_images(prod):
    """The staff user and the catalogue are the development tests' (the same data)."""
    began = time.monotonic()
    pitr_drill.drill(prod, prod.urls["https"], PRODUCTION_FILES)
    prod.state["pitr drill seconds"] = round(time.monotonic() - began)


def test_production_restore_to_a_time_from_s3_alone(prod):
    began = time.monotonic()
    pitr_drill.restore_from_s3_alone(prod, prod.urls["https"], PRODUCTION_FILES)
    prod.state["pitr restore from repo2 seconds"] = round(time.monotonic() - began)

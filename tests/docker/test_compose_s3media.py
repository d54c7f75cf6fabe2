"""docker-compose.s3media.yml run for real: the development stack with the product images in
the MinIO bucket and `--scale backend=3` behind nginx, in a fresh copy of the project."""

import re

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
    assert_served_as_image,
    form_errors,
    png_image,
    staff_session,
    upload_product,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800), pytest.mark.usefixtures("docker_engine")]

S3MEDIA_FILES = [*DEVELOPMENT_FILES, "docker-compose.s3media.yml"]
REPLICAS = 3


@pytest.fixture(scope="module")
def stack():
    project = ComposeProject.fresh()
    project.run("make", "init")
    http, database, console, mail = free_ports(4)
    project.set_env(
        NGINX_HTTP_PORT=f"127.0.0.1:{http}",
        POSTGRES_PUBLISHED_PORT=str(database),
        MINIO_CONSOLE_PORT=str(console),
        MAILPIT_PORT=str(mail),
    )
    project.urls = {"http": f"http://127.0.0.1:{http}"}  # type: ignore[attr-defined]
    project.with_files(["docker-compose.yml", str(BUILD_ON_HOST_NETWORK)]).compose("build", timeout=1800)
    scaled = project.with_files(S3MEDIA_FILES)
    scaled.urls = project.urls  # type: ignore[attr-defined]
    try:
        result = scaled.compose(
            "up", "--detach", "--wait", "--wait-timeout", "600", "--scale", f"backend={REPLICAS}", check=False
        )
        assert result.returncode == 0, (
            f"up failed:\n{result.stderr[-3000:]}\n{scaled.status()}\n{scaled.logs()}"
        )
        yield scaled
    finally:
        scaled.compose("down", "--volumes", "--remove-orphans", check=False, timeout=300)
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


def test_three_backends_behind_nginx_share_the_images_in_the_bucket(stack):
    base = stack.urls["http"]
    backends = stack.compose("ps", "--quiet", "backend").stdout.split()
    assert len(backends) == REPLICAS
    # No service has the uploads volume.
    assert not list((stack.data / "uploads").rglob("*.png"))

    stack.manage("seed_demo")
    stack.manage(
        "createsuperuser", "--noinput", "--username", STAFF_USER, "--email", "staff@example.com",
        env={"DJANGO_SUPERUSER_PASSWORD": STAFF_PASSWORD},
    )  # fmt: skip
    category = stack.shell("from shop.catalog.models import Category; print(Category.objects.first().pk)")
    staff = staff_session(base)
    uploaded = upload_product(staff, base, category, ("front.png", png_image(), "image/png"))
    assert uploaded.status_code == 302, form_errors(uploaded.text)

    # The page (from any backend) names the image; nginx serves it from MinIO with its headers.
    page = requests.get(f"{base}/product/stack-mug/", timeout=10).text
    image_url = re.search(r'href="(/media/products/[0-9a-f]{2}/[0-9a-f]{64}\.png)"', page).group(1)
    image = requests.get(f"{base}{image_url}", timeout=10)
    assert_served_as_image(image)
    assert image.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert not list((stack.data / "uploads").rglob("*.png"))  # not on disk

    # nginx balances over all three replicas (each logs the requests it answered).
    for number in range(12):
        assert requests.get(f"{base}/?via=nginx-{number}", timeout=10).status_code == 200
    answered = {
        line.split("|", 1)[0].strip()
        for line in stack.compose("logs", "--no-color", "backend").stdout.splitlines()
        if "via=nginx" in line
    }
    assert len(answered) == REPLICAS, answered

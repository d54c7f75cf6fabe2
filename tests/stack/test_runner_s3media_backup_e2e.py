"""End to end on the Docker-less runner with two backends and the product images in an S3 bucket:
the worker archives an uploaded image into the backup bucket right after its commit, a backup
copies the media bucket server-side, the image is deleted, and a restore brings it back: nginx
serves it again (moto in server mode holds both buckets)."""

import hashlib
import re
import time
import uuid

import pytest

from tests.conftest import new_media_bucket, s3_client
from tests.shop_http import (
    PRODUCT_SLUG,
    assert_served_as_image,
    browser,
    form_errors,
    png_image,
    staff_session,
    upload_product,
    wait_for_thumbnail,
)
from tests.stack.runner import StackRunner, make_data_root, remove_data_root, stack_environment
from tests.stack.test_runner_s3media_e2e import two_backends_with_s3_media

pytestmark = pytest.mark.stack

BACKUP_PREFIX = "shop-backups"


@pytest.fixture
def buckets(s3_endpoint):
    media = new_media_bucket(s3_endpoint)
    backups = f"backups-{uuid.uuid4().hex[:12]}"
    s3_client(s3_endpoint).create_bucket(Bucket=backups)
    return media, backups


@pytest.fixture
def stack(tmp_path, stack_programs, s3_endpoint, buckets):
    media, backups = buckets
    root = make_data_root()
    env = stack_environment(root)
    env.update(
        two_backends_with_s3_media(s3_endpoint, media),
        BACKUP_S3_BUCKET=backups,
        BACKUP_S3_PREFIX=BACKUP_PREFIX,
        BACKUP_S3_ENDPOINT_URL=s3_endpoint,
        BACKUP_S3_ACCESS_KEY_ID="testing",
        BACKUP_S3_SECRET_ACCESS_KEY="testing",
        BACKUP_ARCHIVE_IMAGES="true",
    )
    runner = StackRunner(env, tmp_path / "stack.log")
    try:
        yield runner
    finally:
        runner.kill_everything()
        remove_data_root(root)


def wait_for_blob(client, bucket: str, sha256: str, timeout: float = 90) -> None:
    key = f"{BACKUP_PREFIX}/blobs/{sha256[:2]}/{sha256}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount"):
            return
        time.sleep(1)
    raise AssertionError(f"{key} did not appear in the backup bucket within {timeout} s")


def test_a_deleted_image_comes_back_from_a_backup_of_the_media_bucket(stack, buckets, s3_endpoint):
    media, backups = buckets
    stack.start(timeout=300)
    via_nginx = stack.url
    first, second = (f"http://{address}" for address in stack.config.backend_addresses)
    category_id = stack.add_staff_and_category()

    staff = staff_session(first)
    uploaded = upload_product(staff, first, category_id, ("front.png", png_image(), "image/png"))
    assert uploaded.status_code == 302, form_errors(uploaded.text)
    visitor = browser(via_nginx)
    wait_for_thumbnail(visitor, second)
    page = visitor.get(f"{second}/product/{PRODUCT_SLUG}/")
    image_url = re.search(r'href="(/media/products/[0-9a-f]{2}/[0-9a-f]{64}\.png)"', page.text).group(1)
    original = visitor.get(f"{via_nginx}{image_url}").content
    # The worker archived it into the backup bucket after the commit, before any backup ran.
    wait_for_blob(s3_client(s3_endpoint), backups, hashlib.sha256(original).hexdigest())

    set_id = stack.manage("backup_now").strip().splitlines()[-1]
    assert set_id in stack.manage("list_backups", "--source", "s3")

    stack.manage(
        "shell", "--verbosity", "0", "-c",
        "from shop.catalog.models import ProductImage; [i.delete() for i in ProductImage.objects.all()]",
    )  # fmt: skip
    assert media.names() == []  # the row and, after its commit, the objects
    assert visitor.get(f"{via_nginx}{image_url}").status_code == 404

    plan = stack.manage("restore_backup", "--latest", "--dry-run")
    assert f"would copy {image_url.removeprefix('/media/')}" in plan
    stack.manage("restore_backup", "--latest", "--yes")

    restored = visitor.get(f"{via_nginx}{image_url}")
    assert_served_as_image(restored)
    assert restored.content == original
    assert image_url in visitor.get(f"{first}/product/{PRODUCT_SLUG}/").text
    assert len(media.names()) == 3  # the image and its two thumbnails, no staging prefix left

    assert stack.stop() == 0
    assert stack.leftover_processes() == []

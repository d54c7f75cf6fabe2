"""MEDIA_STORAGE: the same content-addressed, immutable image files on the uploads volume or in
an S3 bucket (moto in server mode), chosen by configuration; uploads, seed_demo and /readyz in
both, and what an unreachable bucket does."""

import io
import socket
import time

import pytest
from botocore.exceptions import BotoCoreError, EndpointConnectionError
from celery.exceptions import Retry
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from PIL import Image

from shop.catalog.demo import DEMO_CATALOG
from shop.catalog.models import ProductImage
from shop.catalog.services import add_product_image
from shop.catalog.storage import product_image_storage
from tests.catalog.test_image_uploads import BAD_UPLOADS, admin_add_product_post
from tests.conftest import png_bytes, s3_media_settings
from tests.test_settings import manage

IMMUTABLE = "public, max-age=31536000, immutable"


def upload(colour="red"):
    return SimpleUploadedFile("photo.png", png_bytes(300, 200, colour=colour))


def test_an_existing_name_is_never_written_again(make_product, stored_files):
    """Content-addressed: a name that exists holds those bytes, so saving it again writes
    nothing. Proven by changing the stored file behind the shop's back: it stays as it is."""
    first = add_product_image(make_product(), upload("green"))
    stored_files.put(first.image.name, b"left alone")

    second = add_product_image(make_product(), upload("green"))

    assert second.image.name == first.image.name
    assert stored_files.read(first.image.name) == b"left alone"


def test_urls_are_media_url_plus_the_name_in_both_modes(make_product, stored_files):
    image = add_product_image(make_product(), upload())
    assert image.image.url == f"/media/{image.image.name}"
    assert image.small_url == image.image.url  # no thumbnail yet


def test_s3_objects_are_under_the_prefix_typed_and_cached_for_good(make_product, media_bucket):
    image = add_product_image(make_product(), upload())

    assert media_bucket.names() == [image.image.name]
    head = media_bucket.head(image.image.name)
    assert head["ContentType"] == "image/png"
    assert head["CacheControl"] == IMMUTABLE
    with Image.open(io.BytesIO(media_bucket.read(image.image.name))) as stored:
        assert stored.size == (300, 200)


@pytest.mark.parametrize("case", ["SVG", "PNG signature then HTML", "truncated JPEG"])
def test_bad_upload_through_the_admin_writes_nothing_to_the_bucket(
    case, admin_client, category, media_bucket
):
    name, content, reason = BAD_UPLOADS[case]

    response = admin_add_product_post(admin_client, SimpleUploadedFile(name, content))

    assert response.status_code == 200
    assert reason in response.content.decode()
    assert media_bucket.names() == []


def test_admin_upload_lands_in_the_bucket_and_the_worker_adds_thumbnails(
    admin_client, category, media_bucket, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_add_product_post(admin_client, SimpleUploadedFile("a.png", png_bytes(900, 600)))

    assert response.status_code == 302
    image = ProductImage.objects.get()
    assert media_bucket.names() == sorted(image.stored_names())
    assert media_bucket.head(image.thumbnail_small)["ContentType"] == "image/webp"
    assert media_bucket.head(image.thumbnail_large)["CacheControl"] == IMMUTABLE


def test_seed_demo_stores_its_images_and_runs_twice(db, stored_files):
    call_command("seed_demo", stdout=io.StringIO())
    images = sum(len(names) for names in DEMO_CATALOG.values())
    assert len(stored_files.names()) == images
    assert all(stored_files.exists(name) for name in ProductImage.objects.values_list("image", flat=True))

    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    assert "0 products and 0 images added" in out.getvalue()
    assert len(stored_files.names()) == images


def test_readyz_checks_the_bucket(client, db, media_bucket):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["checks"]["media_root"] == "ok"

    media_bucket.client.delete_bucket(Bucket=media_bucket.name)

    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["media_root"].startswith("error: ClientError: An error occurred (404)")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def unreachable_bucket(settings, media_root):
    """MEDIA_STORAGE=s3 on an endpoint where nothing listens."""
    s3_media_settings(settings, f"http://127.0.0.1:{closed_port()}", "media-unreachable")


def test_unreachable_bucket_fails_the_upload_fast_and_leaves_no_row(make_product, unreachable_bucket):
    product = make_product()
    began = time.monotonic()

    with pytest.raises(BotoCoreError):
        add_product_image(product, upload())

    assert time.monotonic() - began < 30
    assert not ProductImage.objects.exists()


def test_the_thumbnail_task_is_retried_while_the_bucket_is_unreachable(make_product, media_bucket, settings):
    from shop.catalog.tasks import generate_thumbnails

    image = add_product_image(make_product(), upload())
    s3_media_settings(settings, f"http://127.0.0.1:{closed_port()}", media_bucket.name)

    with pytest.raises(Retry) as retry:  # eager here; a worker schedules it again, with backoff
        generate_thumbnails.apply(args=[image.pk])

    assert isinstance(retry.value.exc, EndpointConnectionError)
    image.refresh_from_db()
    assert image.thumbnail_small == ""  # nothing recorded that is not stored


def test_unreachable_bucket_makes_readyz_503(client, db, unreachable_bucket):
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["media_root"].startswith("error: EndpointConnectionError")
    assert product_image_storage.url("products/ab/x.png") == "/media/products/ab/x.png"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MEDIA_STORAGE": "nfs"}, "MEDIA_STORAGE='nfs' is not known"),
        ({"MEDIA_STORAGE": "s3", "MEDIA_S3_BUCKET": ""}, "MEDIA_STORAGE=s3 needs MEDIA_S3_BUCKET"),
    ],
)
def test_a_wrong_media_storage_is_refused_at_start(env, message):
    result = manage("check", DJANGO_DEBUG="true", **env)
    assert result.returncode != 0
    assert message in result.stderr

"""MEDIA_STORAGE=s3: the real nginx proxies /media/ to the bucket (moto in server mode) and
gives every image the same headers as a file from the uploads volume, whatever the object's
own metadata says."""

import subprocess
import time

import pytest
import requests

from ops import nginx_config
from ops.runner import nginx_worker_user
from tests.conftest import new_media_bucket
from tests.stack.runner import free_ports, make_data_root, remove_data_root

NAME = f"products/ab/{'ab' * 32}.png"
PNG = b"\x89PNG\r\n\x1a\n" + b"pixels" * 100


def start_nginx(nginx: str, root, bucket_url: str) -> tuple[subprocess.Popen, str]:
    """nginx with the shop's configuration in s3 mode on a free port; (process, base URL)."""
    (http_port, backend_port) = free_ports(2)
    for name in ("static", "uploads", "logs"):
        (root / name).mkdir(exist_ok=True)
    site = nginx_config.NginxSite(
        listen=f"127.0.0.1:{http_port}",
        backend=f"127.0.0.1:{backend_port}",  # nothing there: /media/ must not need it
        static_root=root / "static",
        media_root=root / "uploads",
        log_dir=root / "logs",
        media_storage="s3",
        media_bucket_url=bucket_url,
    )
    prefix = root / "nginx"
    main = nginx_config.write_config(site, prefix, nginx, nginx_worker_user(), root / "logs" / "error.log")
    process = subprocess.Popen(
        [nginx, *nginx_config.nginx_arguments(prefix, main), "-g", "daemon off;"], stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            requests.get(f"{base}/nginx-health", timeout=1)
            return process, base
        except requests.ConnectionError:
            assert process.poll() is None, process.stderr.read().decode()
            time.sleep(0.1)
    process.terminate()
    raise AssertionError("nginx did not start")


@pytest.fixture
def bucket(s3_endpoint):
    """A bucket whose objects under media/ anyone may read, nothing else (nginx signs nothing)."""
    return new_media_bucket(s3_endpoint)


@pytest.fixture
def media_nginx(nginx, s3_endpoint, bucket):
    """nginx proxying /media/ to the bucket's prefix "media/"."""
    root = make_data_root()
    process, base = start_nginx(
        nginx, root, nginx_config.media_s3_url(s3_endpoint, bucket.name, bucket.prefix)
    )
    yield base
    process.terminate()
    process.wait(10)
    remove_data_root(root)


def put(bucket, name: str, body: bytes, **metadata) -> None:
    bucket.client.put_object(Bucket=bucket.name, Key=bucket.key(name), Body=body, **metadata)


def assert_image_headers(response: requests.Response, content_type: str) -> None:
    assert response.status_code == 200
    # One value each (requests joins repeated headers with ", ").
    assert response.headers["Content-Type"] == content_type
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == "default-src 'none'"
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response.headers["Server"] == "nginx"
    assert not [name for name in response.headers if name.lower().startswith(("x-amz", "set-cookie"))]


def test_an_image_from_the_bucket_gets_the_shops_headers(media_nginx, bucket):
    put(bucket, NAME, PNG, ContentType="image/png", CacheControl="public, max-age=31536000, immutable")

    response = requests.get(f"{media_nginx}/media/{NAME}", timeout=10)

    assert_image_headers(response, "image/png")
    assert response.content == PNG


def test_the_type_comes_from_the_name_not_from_the_objects_metadata(media_nginx, bucket):
    """An object someone stored as HTML, with its own caching and a cookie, is still a PNG."""
    put(bucket, NAME, b"<script>alert(1)</script>", ContentType="text/html", CacheControl="no-store")

    response = requests.get(f"{media_nginx}/media/{NAME}", timeout=10)

    assert_image_headers(response, "image/png")


def test_thumbnails_are_webp(media_nginx, bucket):
    name = f"products/thumbs/ab/{'ab' * 32}-300.webp"
    put(bucket, name, b"RIFF....WEBP", ContentType="image/webp")
    assert_image_headers(requests.get(f"{media_nginx}/media/{name}", timeout=10), "image/webp")


def test_a_missing_object_is_a_plain_404_without_the_buckets_answer(media_nginx):
    response = requests.get(f"{media_nginx}/media/{NAME}", timeout=10)

    assert response.status_code == 404
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == "default-src 'none'"
    assert "NoSuchKey" not in response.text
    assert "<Error>" not in response.text


def test_only_the_media_prefix_is_readable_without_credentials(media_nginx, bucket, s3_endpoint):
    bucket.client.put_object(Bucket=bucket.name, Key=f"private/{NAME}", Body=PNG)
    assert requests.get(f"{s3_endpoint}/{bucket.name}/private/{NAME}", timeout=10).status_code == 403


def test_names_that_are_not_images_or_are_hidden_never_reach_the_bucket(media_nginx, bucket):
    put(bucket, "products/evil.html", b"<script>alert(1)</script>", ContentType="text/html")
    put(bucket, "products/.incoming-x.png", PNG, ContentType="image/png")

    assert requests.get(f"{media_nginx}/media/products/evil.html", timeout=10).status_code == 404
    assert requests.get(f"{media_nginx}/media/products/.incoming-x.png", timeout=10).status_code == 404
    put(bucket, NAME, PNG, ContentType="image/png")
    # Refused by nginx (limit_except: 403, which this location answers as its 404).
    assert requests.post(f"{media_nginx}/media/{NAME}", data=b"x", timeout=10).status_code == 404
    assert requests.delete(f"{media_nginx}/media/{NAME}", timeout=10).status_code == 404
    assert requests.get(f"{media_nginx}/media/{NAME}", timeout=10).content == PNG


def test_an_unreachable_bucket_is_a_502_quickly(nginx):
    root = make_data_root()
    (closed,) = free_ports(1)
    process, base = start_nginx(nginx, root, f"http://127.0.0.1:{closed}/media-bucket/media/")
    try:
        began = time.monotonic()
        response = requests.get(f"{base}/media/{NAME}", timeout=30)
        assert response.status_code == 502
        assert time.monotonic() - began < 10
    finally:
        process.terminate()
        process.wait(10)
        remove_data_root(root)


def test_bucket_urls_for_nginx():
    assert nginx_config.media_s3_url("http://minio:9000/", "shop-media", "/media/") == (
        "http://minio:9000/shop-media/media/"
    )
    assert nginx_config.media_s3_url(None, "shop-media", "", "eu-central-1") == (
        "https://shop-media.s3.eu-central-1.amazonaws.com/"
    )

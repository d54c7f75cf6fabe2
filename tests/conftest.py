"""Shared fixtures. Tests talk to the real PostgreSQL and Redis on this machine, and to S3
over HTTP (moto in server mode on loopback), or over HTTPS for pgBackRest (which speaks only that)."""

import contextlib
import io
import ipaddress
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.cache import caches
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.server import ThreadedMotoServer
from PIL import Image
from werkzeug.serving import make_server

from shop.catalog.models import Category, Product
from shop.orders.services import CustomerDetails

# A guest customer for tests that place orders through shop.orders.services.place_order.
CUSTOMER = CustomerDetails(
    email="ann@example.com",
    full_name="Ann Example",
    address_line1="1 Main St",
    postal_code="12345",
    city="Springfield",
    country="Testland",
)


def pytest_collection_modifyitems(config, items):
    """The slow tiers last: the browser tests, then the compose stacks (minutes). The browser
    tests must also come after every test that uses the database in this process: Playwright's
    sync API keeps an event loop running in the main thread until the session ends, and Django
    then refuses database calls from what looks like an async context."""
    items.sort(key=lambda item: (item.get_closest_marker("docker") is not None, _is_browser(item)))


def _is_browser(item) -> bool:
    return item.get_closest_marker("browser") is not None


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Every test gets an empty MEDIA_ROOT of its own."""
    settings.MEDIA_ROOT = tmp_path / "uploads"
    settings.MEDIA_ROOT.mkdir()
    return settings.MEDIA_ROOT


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto in server mode on a free loopback port, stopped at the end of the session."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def self_signed_certificate(directory: Path, ip: str = "127.0.0.1") -> tuple[Path, Path]:
    """A certificate for `ip` (its own CA, so a client may trust exactly it) and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)])
    now = datetime.now(UTC)
    address = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(address, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "s3-tls.crt", directory / "s3-tls.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


class TlsMotoServer(ThreadedMotoServer):
    """moto's server over HTTPS. It serves moto's in-process state, so the buckets are the same as
    on the `s3_endpoint` (HTTP) server of this process. stop() closes the listening socket (a dead
    S3: connections are refused) and start() opens the same port again."""

    def __init__(self, certificate: tuple[Path, Path], port: int = 0):
        super().__init__(ip_address="127.0.0.1", port=port, verbose=False)
        self.certificate = certificate

    def _server_entry(self) -> None:
        app = DomainDispatcherApplication(create_backend_app)
        cert, key = self.certificate
        self._server = make_server(
            self._ip_address,
            self._port,
            app,
            threaded=True,
            request_handler=MotoRequestHandler,
            ssl_context=(str(cert), str(key)),
        )
        self._server.shutdown_request = self._closing_tls(self._server.shutdown_request)
        self._port = self._server.server_address[1]  # the same port after a restart
        self._server_ready_event.set()
        self._server.serve_forever()

    @staticmethod
    def _closing_tls(shutdown_request):
        """A connection ends with TLS's close_notify: werkzeug just closes the socket, and a
        client that reads a response to its end (pgBackRest, when there is no Content-Length)
        then fails with "unexpected eof while reading" and retries until it gives up."""

        def shutdown(request) -> None:
            with contextlib.suppress(OSError, ValueError):
                request.settimeout(2)
                request.unwrap()
            shutdown_request(request)

        return shutdown

    def stop(self) -> None:
        super().stop()
        self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self.get_host_and_port()
        return f"https://{host}:{port}"

    @property
    def ca_file(self) -> Path:
        """The certificate, for clients that verify it (boto3: AWS_CA_BUNDLE)."""
        return self.certificate[0]

    @property
    def running(self) -> bool:
        return self._server_ready_event.is_set()


@pytest.fixture
def s3_tls_endpoint(s3_endpoint, tmp_path):
    """moto over HTTPS on a free loopback port with a self-signed certificate made for this test.
    Same state as `s3_endpoint` (use that one to create and list buckets). The test may stop and
    start the server; it is stopped at the end."""
    server = TlsMotoServer(self_signed_certificate(tmp_path))
    server.start()
    yield server
    if server.running:
        server.stop()


def s3_client(endpoint: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def s3_media_settings(settings, endpoint: str, bucket: str, prefix: str = "media") -> None:
    """MEDIA_STORAGE=s3 on `bucket`, as shop/settings.py configures it from MEDIA_S3_*."""
    settings.MEDIA_STORAGE = "s3"
    settings.MEDIA_S3_BUCKET = bucket
    settings.MEDIA_S3_PREFIX = prefix
    options = {"bucket_name": bucket, "location": prefix, "endpoint_url": endpoint}
    options |= {"region_name": "us-east-1", "access_key": "testing", "secret_key": "testing"}
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "shop.catalog.storage.ContentAddressedS3Storage", "OPTIONS": options},
    }


def allow_anonymous_reads(client, bucket: str, prefix: str = "media") -> None:
    """The media bucket's policy for nginx (README "Scaling out"): anyone who can reach the
    endpoint may GET an object under the prefix; nothing else (no listing, no writes)."""
    statement = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}
    statement["Resource"] = f"arn:aws:s3:::{bucket}/{prefix}/*"
    client.put_bucket_policy(
        Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    )


@dataclass
class MediaBucket:
    client: object  # boto3's S3 client
    name: str
    prefix: str = "media"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def head(self, name: str) -> dict:
        return self.client.head_object(Bucket=self.name, Key=self.key(name))

    def read(self, name: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=self.key(name))["Body"].read()

    def put(self, name: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=self.key(name), Body=data)

    def names(self) -> list[str]:
        listing = self.client.list_objects_v2(Bucket=self.name).get("Contents", [])
        return sorted(item["Key"].removeprefix(f"{self.prefix}/") for item in listing)


def new_media_bucket(endpoint: str) -> MediaBucket:
    """A fresh bucket on the moto server whose prefix nginx may read, as deployed."""
    bucket = MediaBucket(s3_client(endpoint), f"media-{uuid.uuid4().hex[:12]}")
    bucket.client.create_bucket(Bucket=bucket.name)
    allow_anonymous_reads(bucket.client, bucket.name, bucket.prefix)
    return bucket


@pytest.fixture
def media_bucket(settings, s3_endpoint) -> MediaBucket:
    """MEDIA_STORAGE=s3 for this test, on a fresh bucket of the moto server."""
    bucket = new_media_bucket(s3_endpoint)
    s3_media_settings(settings, s3_endpoint, bucket.name, bucket.prefix)
    return bucket


@pytest.fixture(autouse=True)
def _static_files_without_manifest(settings):
    """Tests run without `collectstatic`, so the hashed-name manifest does not exist; the
    stack tests, which do run it, exercise the real storage."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _empty_redis_caches():
    yield
    for alias in ("default", "sessions"):
        caches[alias].clear()


@pytest.fixture
def category(db):
    return Category.objects.create(name="Mugs", slug="mugs")


@pytest.fixture
def make_product(db, category):
    counter = iter(range(1, 10_000))

    def make(stock=10, price="12.50", **fields):
        n = next(counter)
        defaults = {
            "name": f"Product {n}",
            "slug": f"product-{n}",
            "sku": f"SKU-{n:04d}",
            "category": category,
        }
        defaults.update(fields)
        return Product.objects.create(stock=stock, price=Decimal(price), **defaults)

    return make


def png_bytes(width=64, height=48, colour="red", **save_options) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG", **save_options)
    return out.getvalue()


def jpeg_bytes(width=64, height=48, colour="blue", **save_options) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="JPEG", **save_options)
    return out.getvalue()

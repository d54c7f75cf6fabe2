"""Fixtures for the backup tests: real PostgreSQL and an S3 endpoint over HTTP (moto server).

Restores rename databases, so tests that restore use `django_db(transaction=True)`: the
test database is then a real database that can be swapped, and pytest-django flushes it
afterwards. Every database we derive from its name is dropped after each test.
"""

import contextlib
import hashlib
import io
import json
import os
import socket
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from PIL import Image
from psycopg import sql

from shop.backups import local, status
from shop.backups.database import live_database_name, maintenance_connection
from shop.backups.manifest import MANIFEST_NAME, new_set_id
from shop.catalog.models import Category, Product
from shop.catalog.services import add_product_image, generate_thumbnails_for
from shop.orders.services import place_order
from tests.conftest import CUSTOMER, s3_client


def derived_databases() -> list[str]:
    """The databases named after the shop's (staging, rollback, verify copies)."""
    with maintenance_connection() as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", [f"{live_database_name()}__"]
        )
        return [row[0] for row in rows]


@pytest.fixture(autouse=True)
def backup_settings(settings, tmp_path):
    settings.BACKUP_PATH = tmp_path / "backups"
    settings.BACKUP_S3_BUCKET = ""
    settings.BACKUP_AGE_RECIPIENTS = ""  # no encryption unless a test asks for it
    settings.BACKUP_ENCRYPT_LOCAL = False
    settings.BACKUP_AGE_IDENTITY_FILE = ""
    return settings


@pytest.fixture
def key_a(tmp_path):
    """An age key pair (tests/backups/test_encryption.py: Key), its identity in a file."""
    from tests.backups.test_encryption import Key

    return Key(tmp_path, "key-a")


@pytest.fixture
def key_b(tmp_path):
    from tests.backups.test_encryption import Key

    return Key(tmp_path, "key-b")


@pytest.fixture
def s3_bucket(settings, s3_endpoint):
    """A fresh bucket per test, and the settings pointing at it."""
    settings.BACKUP_S3_ENDPOINT_URL = s3_endpoint
    settings.BACKUP_S3_REGION = "us-east-1"
    settings.BACKUP_S3_ACCESS_KEY_ID = "testing"
    settings.BACKUP_S3_SECRET_ACCESS_KEY = "testing"
    settings.BACKUP_S3_BUCKET = f"backups-{uuid.uuid4().hex[:12]}"
    settings.BACKUP_S3_PREFIX = "shop/backups"
    client = s3_client(s3_endpoint)
    client.create_bucket(Bucket=settings.BACKUP_S3_BUCKET)
    return client


@pytest.fixture
def closed_port():
    """A loopback port with nothing listening: S3 that cannot be reached."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def _drop_derived_databases():
    """Drop the databases a test derived from the test database's name (kept for rollback etc.)."""
    yield
    with maintenance_connection() as conn:
        for name in derived_databases():
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def image_upload(colour: str, size=(96, 64), noise=False) -> SimpleUploadedFile:
    out = io.BytesIO()
    image = Image.effect_noise(size, 60).convert("RGB") if noise else Image.new("RGB", size, colour)
    image.save(out, format="PNG")
    return SimpleUploadedFile(f"{colour}.png", out.getvalue(), content_type="image/png")


@pytest.fixture
def shop_data(db, media_root):
    """Products with images (and thumbnails) and a few orders, made through the shop's services."""
    category = Category.objects.create(name="Mugs", slug="mugs")
    products = []
    for n, colour in enumerate(["red", "green", "blue", "orange"], start=1):
        product = Product.objects.create(
            category=category,
            name=f"Mug {n}",
            slug=f"mug-{n}",
            sku=f"MUG-{n}",
            stock=50,
            price=Decimal("9.90"),
        )
        image = add_product_image(product, image_upload(colour), alt_text=f"{colour} mug")
        generate_thumbnails_for(image.pk)
        products.append(product)
    add_product_image(products[0], image_upload("noise", size=(200, 150), noise=True))
    for n in range(3):
        place_order({products[n].pk: 2, products[n + 1].pk: 1}, CUSTOMER, "bank_transfer", f"key-{n}")
    return products


def table_fingerprints() -> dict[str, str]:
    """An MD5 of every table's full content, and the order number sequence's position."""
    result = {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
        for (table,) in cursor.fetchall():
            query = sql.SQL("SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {} t")
            cursor.execute(query.format(sql.Identifier(table)))
            result[table] = cursor.fetchone()
        cursor.execute("SELECT last_value, is_called FROM orders_order_number_seq")
        result["orders_order_number_seq"] = cursor.fetchone()
    return result


def upload_fingerprints(root: Path) -> dict[str, str]:
    """SHA-256 of every upload, by name; hidden names (the restore's own directories, temp files)
    are not uploads, as for the backups."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts)
    }


def hidden_entries(root: Path) -> list[str]:
    return sorted(entry.name for entry in root.iterdir() if entry.name.startswith("."))


def run_command(name: str, *args) -> list[str]:
    out = io.StringIO()
    call_command(name, *args, stdout=out, stderr=out)
    return out.getvalue().splitlines()


def backup_now(*args) -> str:
    """Run `backup_now` and return the set ID from its last line."""
    return run_command("backup_now", *args)[-1]


def manage(*args, env_overrides: dict, **popen) -> subprocess.Popen:
    """`manage.py` in a child process with this test's database, media and backup paths."""
    import sys

    env = dict(os.environ)
    db = django_settings.DATABASES["default"]
    env.update(
        {
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "MEDIA_ROOT": str(django_settings.MEDIA_ROOT),
            "BACKUP_PATH": str(django_settings.BACKUP_PATH),
            "BACKUP_S3_BUCKET": "",
            **env_overrides,
        }
    )
    return subprocess.Popen(
        [sys.executable, "manage.py", *args], env=env, cwd=django_settings.BASE_DIR, **popen
    )


def make_old(set_id: str, days: int) -> str:
    """Give a real set the ID it would have had `days` ago (retention goes by the ID's time)."""
    old_id = new_set_id(datetime.now(UTC) - timedelta(days=days))
    os.rename(local.set_dir(set_id), local.set_dir(old_id))
    manifest_path = local.set_dir(old_id) / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    manifest["id"] = old_id
    manifest_path.write_text(json.dumps(manifest))
    status.forget_set(set_id)
    return old_id


@contextlib.contextmanager
def mounted(path, *mount_args: str):
    """`mount *mount_args path` for the block; skips the test where mounting is not allowed (needs root)."""
    result = subprocess.run(["mount", *mount_args, str(path)], capture_output=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount here (needs root): {result.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def tmpfs_mounted(path, size: str):
    """A real tmpfs of `size` at `path` (a full disk, or a volume-like mount point)."""
    return mounted(path, "-t", "tmpfs", "-o", f"size={size}", "tmpfs")


def bind_mounted(source, path):
    """`source` bind-mounted at `path`: from the same filesystem, as Docker's bind mounts of
    DATA_PATH/uploads are, which os.path.ismount does not recognise as a mount point."""
    return mounted(path, "--bind", str(source))

"""Shared fixtures. Tests talk to the real PostgreSQL and Redis on this machine."""

import io
from decimal import Decimal

import pytest
from django.core.cache import caches
from PIL import Image

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


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Every test gets an empty MEDIA_ROOT of its own."""
    settings.MEDIA_ROOT = tmp_path / "uploads"
    settings.MEDIA_ROOT.mkdir()
    return settings.MEDIA_ROOT


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

import pytest
from django.core.management import call_command

from shop.catalog.models import Product, ProductImage


def test_pages_render(client, make_product, category):
    product = make_product(name="Blue Teapot", description="Holds a litre of tea.")
    for url in (
        "/",
        f"/category/{category.slug}/",
        f"/product/{product.slug}/",
        "/search/?q=teapot",
        "/cart/",
        "/accounts/login/",
        "/accounts/signup/",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
    assert "Blue Teapot" in client.get("/search/?q=teapot").content.decode()


@pytest.mark.parametrize(
    ("query", "found"), [("teapot", True), ("tepot", True), ("litre", True), ("bicycle", False)]
)
def test_search_finds_words_and_forgives_typos(client, make_product, query, found):
    make_product(name="Blue Teapot", description="Holds a litre of tea.")
    names = [p.name for p in client.get(f"/search/?q={query}").context["listing"].products]
    assert ("Blue Teapot" in names) is found


def test_category_pages_paginate(client, make_product, category, settings):
    settings.PRODUCTS_PER_PAGE = 2
    for _ in range(5):
        make_product()
    page = client.get(f"/category/{category.slug}/?page=3").context["listing"].page
    assert (page.number, len(page.object_list)) == (3, 1)


def test_inactive_products_are_hidden(client, make_product):
    product = make_product(is_active=False)
    assert client.get(f"/product/{product.slug}/").status_code == 404


def test_pages_send_security_headers(client, db):
    response = client.get("/")
    assert "default-src 'self'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_seed_demo_is_idempotent(db, media_root):
    call_command("seed_demo")
    counts = (Product.objects.count(), ProductImage.objects.count())
    call_command("seed_demo")
    assert (Product.objects.count(), ProductImage.objects.count()) == counts == (12, 12)
    assert len(list((media_root / "products").rglob("*.png"))) == 12

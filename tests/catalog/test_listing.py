"""Listings (a category, search results): sort orders, page links, a constant number of queries."""

import datetime

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from shop.catalog.models import Product
from shop.catalog.services import add_product_image
from tests.conftest import png_bytes


def names(response):
    return [product.name for product in response.context["listing"].products]


@pytest.fixture
def three_products(make_product):
    now = timezone.now()
    for name, price, age_days in (("Cheap", "3.00", 5), ("Dear", "90.00", 9), ("Middle", "40.00", 1)):
        product = make_product(name=name, price=price)
        Product.objects.filter(pk=product.pk).update(created_at=now - datetime.timedelta(days=age_days))


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("price", ["Cheap", "Middle", "Dear"]),
        ("-price", ["Dear", "Middle", "Cheap"]),
        ("newest", ["Middle", "Cheap", "Dear"]),
        ("name", ["Cheap", "Dear", "Middle"]),
    ],
)
def test_category_sorts(client, category, three_products, sort, expected):
    response = client.get(f"/category/{category.slug}/?sort={sort}")
    assert names(response) == expected
    assert f'<option value="{sort}" selected>' in response.content.decode()


@pytest.mark.parametrize("bad", ["price;drop", "-created_at", "category__name", "", "%00"])
def test_an_unknown_sort_key_falls_back_to_the_default(client, category, three_products, bad):
    response = client.get(f"/category/{category.slug}/", {"sort": bad})
    assert response.status_code == 200
    assert names(response) == ["Cheap", "Dear", "Middle"]


def test_search_sorts_by_relevance_unless_asked(client, make_product):
    make_product(name="Tea cup", description="a cup", price="20.00")
    make_product(name="Cup of tea set with cups", description="cup cup cup", price="5.00")
    by_price = names(client.get("/search/", {"q": "cup", "sort": "price"}))
    assert by_price == ["Cup of tea set with cups", "Tea cup"]
    assert client.get("/search/", {"q": "cup", "sort": "nonsense"}).context["listing"].sort.key == "relevance"


def test_page_links_keep_the_query_and_the_sort(client, make_product, settings):
    settings.PRODUCTS_PER_PAGE = 2
    for n in range(7):
        make_product(name=f"Blue mug {n}")
    html = client.get("/search/", {"q": "mug", "sort": "-price", "page": 2}).content.decode()
    assert 'href="?q=mug&amp;sort=-price&amp;page=3" rel="next"' in html
    assert 'href="?q=mug&amp;sort=-price&amp;page=1" rel="prev"' in html
    assert 'href="?q=mug&amp;sort=-price&amp;page=2" aria-current="page"' in html
    assert 'href="?q=mug&amp;sort=-price&amp;page=4"' in html  # the last page


@pytest.mark.parametrize(("page", "shown"), [("abc", 1), ("999", 3), ("-1", 3), ("0", 3)])
def test_a_bad_page_number_shows_a_page_not_an_error(client, make_product, category, settings, page, shown):
    settings.PRODUCTS_PER_PAGE = 2
    for _ in range(5):
        make_product()
    response = client.get(f"/category/{category.slug}/", {"page": page})
    assert (response.status_code, response.context["listing"].page.number) == (200, shown)


def test_many_pages_are_elided(client, make_product, category, settings):
    settings.PRODUCTS_PER_PAGE = 1
    for _ in range(20):
        make_product()
    html = client.get(f"/category/{category.slug}/", {"page": 10}).content.decode()
    assert "…" in html
    assert 'page=20"' in html
    assert 'page=15"' not in html


def count_queries(client, url, params):
    """The queries for data a page costs (not the search's planner setting or savepoints:
    they are constant too), uncached: a new catalog version, so no fragment is reused."""
    cache.clear()
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url, params).status_code == 200
    return sum(q["sql"].startswith("SELECT") and "set_config" not in q["sql"] for q in queries)


@pytest.mark.parametrize(("url", "params"), [("/category/mugs/", {}), ("/search/", {"q": "mug"})])
def test_the_query_count_does_not_grow_with_products_pages_or_sorts(client, make_product, url, params):
    for n in range(3):
        product = make_product(name=f"Mug {n}")
    small = count_queries(client, url, params)
    for n in range(40):
        make_product(name=f"Big mug {n}")
    add_product_image(product, SimpleUploadedFile("a.png", png_bytes()))
    counts = {
        (sort, page): count_queries(client, url, {**params, "sort": sort, "page": page})
        for sort in ("price", "-price", "newest", "bogus")
        for page in (1, 2, 4)
    }
    assert set(counts.values()) == {small}, counts
    # category page: the category, COUNT, products (+ category join), images, navigation;
    # search: matching categories instead of the category.
    assert small == 5


def test_pages_do_not_read_the_search_document(client, make_product, category):
    product = make_product()
    for url in (f"/category/{category.slug}/", product.get_absolute_url(), "/"):
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        assert not [q["sql"] for q in queries if "search_document" in q["sql"]], url

"""Cached catalog fragments: an edit in the admin shows on the next request after its commit, a
page served from fragments runs no SQL, and nothing of one visitor is ever shown to another.

These run with real commits (transactional_db), so the catalog version is bumped the way it is
in production: by transaction.on_commit after the admin's request.
"""

import logging
import re
import socket

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.template import Context, Template, TemplateSyntaxError

from shop.catalog.cache import bump_catalog_version, catalog_version
from shop.catalog.models import Category, Product
from shop.catalog.stock import adjust_stock
from tests.catalog.test_stock import change_form_post_data
from tests.conftest import png_bytes

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def teapot(make_product):
    return make_product(name="Blue Teapot", slug="blue-teapot", price="12.50", stock=5)


def storefront_pages(product) -> dict[str, str]:
    return {
        "category": f"/category/{product.category.slug}/",
        "product": f"/product/{product.slug}/",
        "search": "/search/?q=teapot",
        "home": "/",
    }


def warm(client, product) -> None:
    """Visit every page twice: the fragments are cached before the edit."""
    for _ in range(2):
        for url in storefront_pages(product).values():
            assert client.get(url).status_code == 200, url


def save_in_admin(admin_client, product, **changes) -> None:
    url = f"/admin/catalog/product/{product.pk}/change/"
    data = {**change_form_post_data(admin_client.get(url)), **changes}
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors


def test_price_edited_in_the_admin_shows_on_the_next_request(client, admin_client, teapot):
    warm(client, teapot)
    assert "12.50" in client.get(f"/product/{teapot.slug}/").content.decode()

    save_in_admin(admin_client, teapot, price="17.25")

    for page, url in storefront_pages(teapot).items():
        html = client.get(url).content.decode()
        assert "17.25" in html, page
        assert "12.50" not in html, page


def test_name_edited_in_the_admin_shows_on_the_next_request(client, admin_client, teapot):
    warm(client, teapot)

    save_in_admin(admin_client, teapot, name="Green Teapot")

    for page, url in storefront_pages(teapot).items():
        html = client.get(url).content.decode()
        assert "Green Teapot" in html, page
        assert "Blue Teapot" not in html, page
    assert "<title>Green Teapot" in client.get(f"/product/{teapot.slug}/").content.decode()


def test_stock_adjusted_in_the_admin_shows_on_the_next_request(client, admin_client, teapot):
    warm(client, teapot)
    assert "Only 5 left" in client.get(f"/product/{teapot.slug}/").content.decode()

    response = admin_client.post(
        f"/admin/catalog/product/{teapot.pk}/adjust-stock/", {"delta": "-5", "reason": "Count"}
    )
    assert response.status_code == 302

    product_page = client.get(f"/product/{teapot.slug}/").content.decode()
    assert "Sold out" in product_page
    assert "Add to cart" not in product_page
    assert "Sold out" in client.get(f"/category/{teapot.category.slug}/").content.decode()


def test_image_added_in_the_admin_shows_on_the_next_request(client, admin_client, teapot):
    warm(client, teapot)
    assert "No image" in client.get(f"/product/{teapot.slug}/").content.decode()

    upload = SimpleUploadedFile("teapot.png", png_bytes(400, 300), content_type="image/png")
    save_in_admin(
        admin_client,
        teapot,
        **{
            "images-TOTAL_FORMS": "1",
            "images-0-image": upload,
            "images-0-alt_text": "lid",
            "images-0-position": "0",
        },
    )

    image = teapot.images.get()
    for page, url in storefront_pages(teapot).items():
        html = client.get(url).content.decode()
        assert "No image" not in html, page
        # The thumbnail once the (eager) task has made it; the original before.
        assert image.small_url in html or image.large_url in html, page


def test_category_renamed_in_the_admin_shows_on_the_next_request(client, admin_client, teapot):
    category = teapot.category
    warm(client, teapot)

    response = admin_client.post(
        f"/admin/catalog/category/{category.pk}/change/",
        {"name": "Kettles", "slug": category.slug, "description": "", "position": "0"},
    )
    assert response.status_code == 302

    assert "<h1>Kettles</h1>" in client.get(f"/category/{category.slug}/").content.decode()
    assert ">Kettles</a>" in client.get("/").content.decode()  # the category navigation


def test_product_deactivated_in_the_admin_is_gone_on_the_next_request(client, admin_client, teapot):
    warm(client, teapot)

    data = change_form_post_data(admin_client.get(f"/admin/catalog/product/{teapot.pk}/change/"))
    del data["is_active"]  # the unticked box
    assert admin_client.post(f"/admin/catalog/product/{teapot.pk}/change/", data).status_code == 302

    assert client.get(f"/product/{teapot.slug}/").status_code == 404
    assert "Blue Teapot" not in client.get(f"/category/{teapot.category.slug}/").content.decode()


def test_a_checkout_changes_the_stock_shown(client, teapot):
    from shop.orders.services import place_order
    from tests.conftest import CUSTOMER

    warm(client, teapot)

    place_order({teapot.pk: 2}, CUSTOMER, "bank_transfer", "idempotency-key-1")

    assert "Only 3 left" in client.get(f"/product/{teapot.slug}/").content.decode()


def test_a_page_served_from_fragments_runs_no_sql(client, teapot, django_assert_num_queries):
    warm(client, teapot)
    for url in storefront_pages(teapot).values():
        with django_assert_num_queries(0):
            assert client.get(url).status_code == 200


def test_missing_pages_are_404_cached_or_not(client, teapot):
    warm(client, teapot)
    assert client.get("/product/no-such-thing/").status_code == 404
    assert client.get("/category/no-such-thing/").status_code == 404
    Product.objects.filter(pk=teapot.pk).delete()  # a queryset delete still sends post_delete
    assert client.get(f"/product/{teapot.slug}/").status_code == 404


def test_a_change_not_yet_committed_is_not_cached_for_later(client, teapot):
    """A request served while a change is in flight must not keep the old rows cached after
    the commit: the version is bumped again once the transaction commits."""
    with transaction.atomic():
        adjust_stock(teapot, 10, "Delivery")
        # A request now, on its own connection, reads the old stock and caches it under this:
        version_in_transaction = catalog_version()
    assert catalog_version() != version_in_transaction


def test_rolled_back_changes_leave_pages_correct(client, teapot):
    warm(client, teapot)

    def rename_then_fail():
        with transaction.atomic():
            Product.objects.filter(pk=teapot.pk).update(name="Never Saved")
            bump_catalog_version()
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        rename_then_fail()
    assert "Blue Teapot" in client.get(f"/product/{teapot.slug}/").content.decode()


# --- nothing per visitor in a shared fragment ------------------------------------------------


def test_fragments_hold_nothing_of_one_visitor(client, admin_client, teapot):
    """A signed-in customer with a cart fills the cache; an anonymous visitor then gets the
    same fragments, with their own empty cart, no name, and a CSRF token of their own."""
    page = admin_client.get(f"/product/{teapot.slug}/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    admin_client.post(f"/cart/add/{teapot.pk}/", {"quantity": "3", "csrfmiddlewaretoken": token})
    for url in storefront_pages(teapot).values():
        html = admin_client.get(url).content.decode()
        assert "Cart (3)" in html
        assert "My orders" in html

    for url in storefront_pages(teapot).values():
        html = client.get(url).content.decode()
        assert "Cart (0)" in html, url
        assert "My orders" not in html, url
        assert "Sign out" not in html, url
        assert "was added to your cart" not in html, url

    visitor_page = client.get(f"/product/{teapot.slug}/").content.decode()
    visitor_token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', visitor_page).group(1)
    assert visitor_token != token
    response = client.post(f"/cart/add/{teapot.pk}/", {"quantity": "1", "csrfmiddlewaretoken": visitor_token})
    assert response.status_code == 302  # the token in the cached page is valid for this visitor


@pytest.mark.parametrize(
    "body",
    [
        "{{ user.username }}",
        "{% if user.is_authenticated %}hi{% endif %}",
        "{{ cart_count }}",
        "{% for message in messages %}{{ message }}{% endfor %}",
        "{{ request.path }}",
        "{% with name=user.get_username %}{{ name }}{% endwith %}",
    ],
)
def test_a_fragment_naming_a_visitor_is_refused(body):
    template = Template('{% load catalog_cache %}{% catalogcache "x" %}' + body + "{% endcatalogcache %}")
    with pytest.raises(TemplateSyntaxError, match="per-visitor"):
        template.render(Context({}))


def test_a_fragment_including_a_template_that_names_a_visitor_is_refused():
    template = Template(
        '{% load catalog_cache %}{% catalogcache "x" %}{% include "base.html" %}{% endcatalogcache %}'
    )
    with pytest.raises(TemplateSyntaxError, match="per-visitor"):
        template.render(Context({}))


# --- what may reach Redis ----------------------------------------------------------------------


def fragment_keys() -> list[str]:
    return [key for key in cache._cache.get_client().keys("*catalog:*") if b"version" not in key]


def test_search_words_and_odd_page_numbers_never_reach_redis(client, teapot):
    before = len(fragment_keys())
    for n in range(5):
        assert client.get(f"/search/?q=teapot+{n}").status_code == 200
        assert client.get(f"/category/{teapot.category.slug}/?page=x{n}").status_code == 200
    # The navigation and the category's title: neither the search results nor the odd pages.
    assert len(fragment_keys()) == before + 2


def test_a_catalog_change_with_redis_unreachable_is_saved_and_logged(teapot, settings, caplog):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    settings.CACHES = {
        **settings.CACHES,
        "default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{dead_port}/0"},
    }
    with caplog.at_level(logging.ERROR):
        adjust_stock(teapot, 3, "Delivery")
    teapot.refresh_from_db()
    assert teapot.stock == 8
    assert "could not bump the catalog version" in caplog.text
    assert Category.objects.count() == 1


# --- what a page costs in Redis ------------------------------------------------------------------


def redis_reads(fetch) -> tuple[int, int]:
    """(hits, misses) of the Redis server while `fetch()` runs: every GET of the cache and the
    sessions (one server, separate databases)."""
    client = cache._cache.get_client()

    def stats():
        info = client.info("stats")
        return info["keyspace_hits"], info["keyspace_misses"]

    hits, misses = stats()
    fetch()
    after_hits, after_misses = stats()
    return after_hits - hits, after_misses - misses


def test_a_visitor_without_a_cart_costs_one_redis_read(client, teapot):
    """The catalog version, and nothing else: fragments come from the process's memory and a
    visitor without a session cookie has no session to read (CSRF lives in a cookie)."""
    url = f"/product/{teapot.slug}/"
    warm(client, teapot)
    assert "sessionid" not in client.cookies
    assert redis_reads(lambda: client.get(url)) == (1, 0)

    page = client.get(url).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    client.post(f"/cart/add/{teapot.pk}/", {"quantity": "1", "csrfmiddlewaretoken": token})
    assert "sessionid" in client.cookies
    assert redis_reads(lambda: client.get(url)) == (2, 0)  # and, with a cart, the session


def test_cached_listings_follow_the_sort_and_page_in_the_url(client, make_product, category):
    for n, price in enumerate(["3.00", "1.00", "2.00"]):
        make_product(name=f"Mug {n}", price=price)
    url = f"/category/{category.slug}/"
    for _ in range(2):
        cheapest_first = client.get(url, {"sort": "price"}).content.decode()
        dearest_first = client.get(url, {"sort": "-price"}).content.decode()
        assert cheapest_first.index("Mug 1") < cheapest_first.index("Mug 0")
        assert dearest_first.index("Mug 0") < dearest_first.index("Mug 1")


def test_listings_with_other_parameters_are_rendered_not_cached(client, teapot):
    before = len(fragment_keys())
    url = f"/category/{teapot.category.slug}/"
    for params in ({"utm": "x"}, {"sort": "bogus"}, {"page": "0"}, {"page": ["1", "2"]}):
        assert "Blue Teapot" in client.get(url, params).content.decode()
    assert len(fragment_keys()) == before + 2  # the navigation and the title, not the listing

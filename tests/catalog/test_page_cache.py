"""Whole pages shared between visitors without a session (shop/catalog/pages.py): nothing of
one visitor is ever served to another, a visitor with a cart or a message sees their own page,
and each visitor gets a CSRF token of their own that the shop accepts."""

import re

import pytest
from django.contrib.messages.storage.cookie import CookieStorage
from django.test import Client

from shop.catalog.cache import CSRF_HOLE, local_fragments
from tests.catalog.test_fragment_cache import fragment_keys, storefront_pages, warm

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def teapot(make_product):
    return make_product(name="Blue Teapot", slug="blue-teapot", price="12.50", stock=5)


def csrf_token_in(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


def shared_pages() -> dict[str, str]:
    """The pages this process keeps for visitors without a session, by key."""
    with local_fragments.lock:
        return {key: html for key, html in local_fragments.entries.items() if ":page:" in key}


def add_to_cart(client, product, quantity: int) -> None:
    token = csrf_token_in(client.get(f"/product/{product.slug}/").content.decode())
    data = {"quantity": str(quantity), "csrfmiddlewaretoken": token}
    response = client.post(f"/cart/add/{product.pk}/", data)
    assert response.status_code == 302


def test_a_visitor_without_a_session_gets_a_shared_page_holding_no_token(client, teapot):
    warm(client, teapot)
    pages = shared_pages()
    product_pages = [html for key, html in pages.items() if html and "Add to cart" in html]
    assert product_pages, f"no shared product page among {list(pages)}"
    for html in pages.values():
        assert "csrfmiddlewaretoken" not in html or CSRF_HOLE in html
        assert not re.search(r'name="csrfmiddlewaretoken" value="[A-Za-z0-9]', html)
    # The shared product page is in Redis (the search page, made of free text, is not).
    assert any(b":page:" in key for key in fragment_keys())


def test_each_visitor_gets_a_token_of_their_own_that_is_accepted(teapot):
    first, second = Client(), Client()
    url = f"/product/{teapot.slug}/"
    warm(first, teapot)
    response = second.get(url)
    assert "Cookie" in response.get("Vary", "")
    assert "csrftoken" in response.cookies  # set with the token filled into the page
    tokens = {csrf_token_in(client.get(url).content.decode()) for client in (first, second)}
    assert len(tokens) == 2
    for client in (first, second):
        add_to_cart(client, teapot, 1)
        assert "Cart (1)" in client.get(url).content.decode()


def test_a_visitor_with_a_cart_sees_their_cart_on_every_page(client, teapot):
    warm(client, teapot)
    add_to_cart(client, teapot, 2)
    assert "sessionid" in client.cookies
    for url in storefront_pages(teapot).values():
        assert "Cart (2)" in client.get(url).content.decode(), url


def test_a_signed_in_customer_and_an_anonymous_visitor_never_see_each_others_page(admin_client, teapot):
    anonymous_before, anonymous_after = Client(), Client()
    warm(anonymous_before, teapot)  # shared pages cached first
    add_to_cart(admin_client, teapot, 3)
    for url in storefront_pages(teapot).values():
        html = admin_client.get(url).content.decode()
        assert "Cart (3)" in html, url
        assert "My orders" in html, url
    for client in (anonymous_before, anonymous_after):
        for url in storefront_pages(teapot).values():
            html = client.get(url).content.decode()
            assert "Cart (0)" in html, url
            assert "My orders" not in html, url
            assert "Sign out" not in html, url


def test_a_visitor_with_a_message_waiting_gets_it(client, teapot):
    """A message lives in a cookie (or the session): its bearer's page is rendered for them."""
    url = f"/product/{teapot.slug}/"
    warm(client, teapot)
    add_to_cart(client, teapot, 1)
    del client.cookies["sessionid"]  # the message is in the cookie: no session needed to see it
    assert CookieStorage.cookie_name in client.cookies
    assert "was added to your cart" in client.get(url).content.decode()
    assert "was added to your cart" not in Client().get(url).content.decode()


def test_pages_with_unknown_parameters_are_never_shared(client, teapot):
    warm(client, teapot)
    before = set(shared_pages())
    for url in storefront_pages(teapot).values():
        assert client.get(url, {"utm": "x"}).status_code == 200
    assert set(shared_pages()) == before

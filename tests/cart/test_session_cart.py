"""The cart lives in the session, and the session lives in Redis."""

import redis
from django.conf import settings
from django.test import Client


def test_cart_survives_a_new_client_with_the_same_session_cookie(client, make_product):
    product = make_product(stock=5)
    client.post(f"/cart/add/{product.pk}/", {"quantity": 3})
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value

    # The session is a key in the sessions database of the real Redis server...
    sessions_db = redis.Redis.from_url(settings.CACHES["sessions"]["LOCATION"])
    assert any(cookie in key.decode() for key in sessions_db.scan_iter("session:*"))

    # ...so a fresh client (a new browser tab, or the app after a restart) sees the cart.
    other = Client()
    other.cookies[settings.SESSION_COOKIE_NAME] = cookie
    response = other.get("/cart/")
    assert [(line.product.pk, line.quantity) for line in response.context["lines"]] == [(product.pk, 3)]


def test_cart_updates_and_removal(client, make_product):
    product = make_product(stock=5)
    client.post(f"/cart/add/{product.pk}/", {"quantity": 1})
    client.post(f"/cart/add/{product.pk}/", {"quantity": 2})
    assert client.get("/cart/").context["lines"][0].quantity == 3

    client.post(f"/cart/update/{product.pk}/", {"quantity": 0})
    assert client.get("/cart/").context["lines"] == []


def test_inactive_products_cannot_be_added(client, make_product):
    product = make_product(stock=5, is_active=False)
    assert client.post(f"/cart/add/{product.pk}/", {"quantity": 1}).status_code == 404

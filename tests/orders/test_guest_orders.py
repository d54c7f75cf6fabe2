"""A guest's orders become the account's when the same browser signs up or signs in with the
e-mail address they were placed under; nobody else's do (shop/orders/guest_orders.py)."""

import pytest
from django.test import Client

from shop.accounts.models import User
from shop.orders.models import Order
from tests.accounts.test_accounts import PASSWORD, signup
from tests.orders.test_checkout_views import ADDRESS, checkout_form_key


@pytest.fixture
def product(make_product):
    return make_product(stock=10, price="8.00")


def guest_checkout(client, product, email: str) -> Order:
    client.post(f"/cart/add/{product.pk}/", {"quantity": 1})
    key = checkout_form_key(client)
    response = client.post("/orders/checkout/", {**ADDRESS, "email": email, "idempotency_key": key})
    assert response.status_code == 302
    return Order.objects.get(number=response["Location"].split("/")[-2])


def my_orders(client) -> str:
    response = client.get("/accounts/orders/")
    assert response.status_code == 200
    return response.content.decode()


def test_signing_up_after_a_guest_checkout_shows_the_order_in_the_account(client, product):
    order = guest_checkout(client, product, "erin@example.com")
    assert order.user is None

    signup(client, email="ERIN@example.com")  # the address's case does not matter

    order.refresh_from_db()
    assert order.user == User.objects.get(username="erin")
    assert order.number in my_orders(client)
    assert client.get(order.get_absolute_url()).status_code == 200


def test_signing_in_after_a_guest_checkout_claims_the_order_too(client, product):
    user = User.objects.create_user("frank", "frank@example.com", PASSWORD)
    order = guest_checkout(client, product, "frank@example.com")

    assert client.post("/accounts/login/", {"username": "frank", "password": PASSWORD}).status_code == 302

    order.refresh_from_db()
    assert order.user == user
    assert order.number in my_orders(client)


def test_an_order_under_another_address_stays_a_guest_order(client, product):
    order = guest_checkout(client, product, "someone.else@example.com")

    signup(client, email="erin@example.com")

    order.refresh_from_db()
    assert order.user is None
    assert order.number not in my_orders(client)


def test_the_same_address_in_another_browser_claims_nothing(client, product):
    """Sign-up does not verify the address: owning a guest's e-mail address in the form is not
    enough to see the guest's order (name, address), having placed it in this session is."""
    order = guest_checkout(Client(), product, "erin@example.com")

    signup(client, email="erin@example.com")

    order.refresh_from_db()
    assert order.user is None
    assert order.number not in my_orders(client)

"""Checkout through the views: replayed POSTs, out-of-stock, confirmation email."""

import pytest
from django.core import mail
from django.test import Client

from shop.catalog.models import Product
from shop.orders.models import Order

ADDRESS = {
    "email": "bob@example.com",
    "full_name": "Bob Buyer",
    "address_line1": "2 High St",
    "postal_code": "999",
    "city": "Townsville",
    "country": "Testland",
    "payment_method": "bank_transfer",
}


def checkout_form_key(client) -> str:
    response = client.get("/orders/checkout/")
    assert response.status_code == 200
    return response.context["form"].initial["idempotency_key"]


@pytest.fixture
def client_with_cart(client, make_product):
    product = make_product(stock=5, price="20.00")
    client.post(f"/cart/add/{product.pk}/", {"quantity": 2})
    client.product = product
    return client


def test_replayed_checkout_post_creates_one_order(client_with_cart, django_capture_on_commit_callbacks):
    key = checkout_form_key(client_with_cart)
    data = {**ADDRESS, "idempotency_key": key}

    with django_capture_on_commit_callbacks(execute=True):
        first = client_with_cart.post("/orders/checkout/", data)
        second = client_with_cart.post("/orders/checkout/", data)  # double click / replay

    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"]
    order = Order.objects.get()
    assert first["Location"] == order.get_absolute_url()
    client_with_cart.product.refresh_from_db()
    assert client_with_cart.product.stock == 3
    assert len(mail.outbox) == 1
    assert order.number in mail.outbox[0].subject


def test_order_totals_come_from_the_database_not_the_session(client_with_cart):
    session = client_with_cart.session
    session["cart"] = {str(client_with_cart.product.pk): 1, "price": 0}
    session.save()
    key = checkout_form_key(client_with_cart)

    client_with_cart.post("/orders/checkout/", {**ADDRESS, "idempotency_key": key})

    order = Order.objects.get()
    line = order.lines.get()
    assert (line.product_name, line.sku, line.unit_price) == (
        client_with_cart.product.name,
        client_with_cart.product.sku,
        client_with_cart.product.price,
    )
    assert order.total == client_with_cart.product.price


def test_out_of_stock_checkout_shows_a_message_and_changes_nothing(client_with_cart):
    key = checkout_form_key(client_with_cart)
    Product.objects.filter(pk=client_with_cart.product.pk).update(stock=1)  # sold meanwhile

    response = client_with_cart.post("/orders/checkout/", {**ADDRESS, "idempotency_key": key})

    assert response.status_code == 200
    assert "Not enough stock" in response.content.decode()
    assert "1 left, you asked for 2" in response.content.decode()
    assert not Order.objects.exists()
    client_with_cart.product.refresh_from_db()
    assert client_with_cart.product.stock == 1
    assert client_with_cart.session["cart"]  # the cart is kept, to be edited


def test_order_page_is_private(client_with_cart):
    key = checkout_form_key(client_with_cart)
    response = client_with_cart.post("/orders/checkout/", {**ADDRESS, "idempotency_key": key})

    assert client_with_cart.get(response["Location"]).status_code == 200
    assert Client().get(response["Location"]).status_code == 404


def test_signed_in_customer_sees_order_history(client, django_user_model, make_product):
    product = make_product(stock=3)
    response = client.post(
        "/accounts/signup/",
        {
            "username": "carol",
            "email": "carol@example.com",
            "first_name": "Carol",
            "last_name": "C",
            "password1": "a-long-Passphrase-42",
            "password2": "a-long-Passphrase-42",
        },
    )
    assert response.status_code == 302
    client.post(f"/cart/add/{product.pk}/", {"quantity": 1})
    key = checkout_form_key(client)
    client.post("/orders/checkout/", {**ADDRESS, "email": "carol@example.com", "idempotency_key": key})

    order = Order.objects.get()
    assert order.user == django_user_model.objects.get(username="carol")
    history = client.get("/accounts/orders/")
    assert order.number in history.content.decode()


def test_another_customers_replayed_key_neither_shows_their_order_nor_eats_the_cart(
    client_with_cart, make_product
):
    """Bob posts checkout with Alice's idempotency key (leaked from her form) and his own cart."""
    alice = client_with_cart
    alice_key = checkout_form_key(alice)
    alice_address = {**ADDRESS, "full_name": "Alice Private", "address_line1": "7 Secret Lane"}
    alices_order_url = alice.post("/orders/checkout/", {**alice_address, "idempotency_key": alice_key})[
        "Location"
    ]
    bob = Client()
    bobs_product = make_product(stock=4, price="5.00")
    bob.post(f"/cart/add/{bobs_product.pk}/", {"quantity": 3})

    response = bob.post(
        "/orders/checkout/", {**ADDRESS, "full_name": "Bob Other", "idempotency_key": alice_key}
    )

    assert response.status_code == 302
    assert response["Location"] != alices_order_url
    page = bob.get(response["Location"]).content.decode()
    assert "Bob Other" in page
    assert "Alice Private" not in page
    assert "7 Secret Lane" not in page
    assert bob.get(alices_order_url).status_code == 404
    bobs_order = Order.objects.get(full_name="Bob Other")
    assert [(line.product_id, line.quantity) for line in bobs_order.lines.all()] == [(bobs_product.pk, 3)]
    bobs_product.refresh_from_db()
    assert bobs_product.stock == 1  # his cart became his order, not nothing
    assert Order.objects.filter(full_name="Alice Private").count() == 1


def test_the_same_key_from_two_sessions_makes_two_orders_and_a_replay_in_each_returns_its_own(
    make_product, django_capture_on_commit_callbacks
):
    product = make_product(stock=10)
    first, second = Client(), Client()
    for client in (first, second):
        client.post(f"/cart/add/{product.pk}/", {"quantity": 1})
    key = checkout_form_key(first)
    data = {**ADDRESS, "idempotency_key": key}

    locations = [client.post("/orders/checkout/", data)["Location"] for client in (first, second)]
    replays = [client.post("/orders/checkout/", data)["Location"] for client in (first, second)]

    assert locations == replays
    assert locations[0] != locations[1]
    assert Order.objects.count() == 2
    product.refresh_from_db()
    assert product.stock == 8

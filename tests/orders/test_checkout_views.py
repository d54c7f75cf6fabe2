"""Checkout through the views: replayed POSTs, out-of-stock, confirmation email."""

import pytest
from django.core import mail
from django.test import Client

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
    client_with_cart.product.stock = 1
    client_with_cart.product.save()

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

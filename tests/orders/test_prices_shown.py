"""Every page and message that shows money formats it for the shop's locale and currency."""

from django.contrib.auth import get_user_model
from django.core import mail

from tests.orders.test_checkout_views import ADDRESS, checkout_form_key


def test_prices_through_cart_checkout_confirmation_account_and_email(
    client, make_product, settings, django_capture_on_commit_callbacks
):
    settings.LANGUAGE_CODE, settings.SHOP_CURRENCY = "en-us", "EUR"
    user = get_user_model().objects.create_user("ann", "ann@example.com", "a long password 123")
    client.force_login(user)
    product = make_product(stock=5, price="1020.00")
    client.post(f"/cart/add/{product.pk}/", {"quantity": 2})

    cart = client.get("/cart/").content.decode()
    assert "€1,020.00" in cart
    assert "€2,040.00" in cart
    assert "€2,040.00" in client.get("/orders/checkout/").content.decode()

    key = checkout_form_key(client)
    with django_capture_on_commit_callbacks(execute=True):
        confirmation = client.post("/orders/checkout/", {**ADDRESS, "idempotency_key": key}, follow=True)
    html = confirmation.content.decode()
    assert "€1,020.00" in html
    assert "Please transfer €2,040.00" in html
    assert "€2,040.00" in client.get("/accounts/orders/").content.decode()
    assert "Total: €2,040.00" in mail.outbox[0].body
    assert "2040.00 EUR" not in html + mail.outbox[0].body

    # An order keeps the currency it was placed in, whatever the shop sells in later.
    settings.SHOP_CURRENCY = "USD"
    assert "€2,040.00" in client.get("/accounts/orders/").content.decode()
    assert "$" not in client.get("/accounts/orders/").content.decode()

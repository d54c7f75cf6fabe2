"""Markup checks the browser tests rely on, run here on every page without a browser:
images have alt text, invalid fields say so and point at their error, inputs have labels."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from shop.catalog.services import add_product_image
from tests.catalog.test_product_page import Tags
from tests.conftest import png_bytes
from tests.orders.test_checkout_views import checkout_form_key


@pytest.fixture
def product_with_image(make_product):
    product = make_product(name="Blue Teapot", stock=3)
    add_product_image(product, SimpleUploadedFile("t.png", png_bytes()))
    return product


def labelled(tags, field):
    """An input is labelled by a <label for=id>, aria-label, or aria-labelledby."""
    return (
        field.get("aria-label")
        or field.get("aria-labelledby")
        or tags.all("label", **{"for": field.get("id")})
    )


@pytest.mark.parametrize(
    "url", ["/", "/category/mugs/", "/product/product-1/", "/search/?q=teapot", "/cart/"]
)
def test_every_image_has_alt_text_and_every_input_a_label(client, product_with_image, url):
    client.post(f"/cart/add/{product_with_image.pk}/", {"quantity": 1})
    tags = Tags(client.get(url).content.decode())
    assert all(img.get("alt") for img in tags.all("img")), url
    for name in ("input", "select", "textarea"):
        for field in tags.all(name):
            if field.get("type") not in ("hidden", "submit"):
                assert labelled(tags, field), (url, field)


def assert_errors_tied_to_fields(html, expected_invalid):
    tags = Tags(html)
    ids = {attrs.get("id") for _, attrs in tags.tags}
    invalid = [attrs for _, attrs in tags.tags if attrs.get("aria-invalid") == "true"]
    assert {field["name"] for field in invalid} >= expected_invalid
    for field in invalid:
        if field.get("type") in ("radio", "checkbox"):  # a group: its fieldset points at the error
            assert tags.all("fieldset", **{"aria-describedby": f"id_{field['name']}_error"}), field
            continue
        described_by = field.get("aria-describedby", "").split()
        assert any(ref.endswith("_error") for ref in described_by), field
        assert set(described_by) <= ids, field


def test_checkout_errors_are_tied_to_their_fields(client, product_with_image):
    client.post(f"/cart/add/{product_with_image.pk}/", {"quantity": 1})
    key = checkout_form_key(client)
    response = client.post("/orders/checkout/", {"idempotency_key": key, "email": "not an address"})
    assert response.status_code == 200
    assert_errors_tied_to_fields(response.content.decode(), {"email", "full_name", "city", "payment_method"})


def test_signup_errors_are_tied_to_their_fields(client, db):
    response = client.post("/accounts/signup/", {"username": "", "password1": "a", "password2": "b"})
    assert_errors_tied_to_fields(response.content.decode(), {"username", "email", "password2"})

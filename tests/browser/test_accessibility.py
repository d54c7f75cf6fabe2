"""What the storefront owes every shopper, checked in Chromium: text for every image, form
errors that assistive technology reads with their field, and no sideways scrolling on a phone."""

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.shopper import SHOPPER, add_to_cart, field, fill_checkout, heading

pytestmark = [pytest.mark.browser, pytest.mark.stack]

# The pages a shopper passes through, cart and checkout with something in the cart.
STOREFRONT = {
    "home": "/",
    "listing": "/category/mugs/",
    "search": "/search/?q=poster",
    "product": "/product/travel-mug/",
    "cart": "/cart/",
    "checkout": "/orders/checkout/",
}

IMAGES_WITHOUT_ALT = """imgs => imgs
    .filter(img => !(img.getAttribute("alt") || "").trim())
    .map(img => img.outerHTML)"""
# The document's width against the viewport's, and what sticks out on the right.
OVERFLOW = """() => {
    const root = document.documentElement;
    const wider = [...document.body.querySelectorAll("*")]
        .filter(el => el.getBoundingClientRect().right > root.clientWidth + 0.5)
        .map(el => el.tagName.toLowerCase() + (el.className ? "." + el.className : ""));
    return {scrollWidth: root.scrollWidth, clientWidth: root.clientWidth, wider: wider.slice(0, 8)};
}"""


def storefront(page: Page) -> Iterator[str]:
    """Visit each storefront page with an item in the cart; yield each one's name."""
    page.goto("/product/travel-mug/")
    add_to_cart(page)
    for name, path in STOREFRONT.items():
        page.goto(path)
        expect(heading(page)).to_be_visible()
        yield name


def test_every_image_has_alternative_text(page: Page):
    missing, images = {}, 0
    for name in storefront(page):
        page.wait_for_load_state("load")
        images += page.locator("img").count()
        if without_alt := page.locator("img").evaluate_all(IMAGES_WITHOUT_ALT):
            missing[name] = without_alt
    assert images > 0, "no image on any storefront page: nothing was checked"
    assert missing == {}


def test_no_horizontal_scrolling_at_375_pixels(phone: Page):
    assert phone.viewport_size["width"] == 375
    overflowing = {}
    for name in storefront(phone):
        phone.wait_for_load_state("load")  # images and the stylesheet in place
        sizes = phone.evaluate(OVERFLOW)
        if sizes["scrollWidth"] > sizes["clientWidth"]:
            overflowing[name] = sizes
    assert overflowing == {}


def test_checkout_errors_are_tied_to_their_fields(page: Page):
    page.goto("/product/city-poster/")
    add_to_cart(page)
    page.goto("/orders/checkout/")
    fill_checkout(page, {**SHOPPER, "email": "casey@example"})  # the browser lets it through
    page.get_by_role("button", name="Place order").click()

    email = field(page, "Email")
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(email).to_have_accessible_description(re.compile("valid email address"))
    expect(field(page, "City")).not_to_have_attribute("aria-invalid", "true")
    expect(heading(page)).to_have_text("Checkout")  # nothing was ordered


def test_sign_up_errors_are_tied_to_their_fields(page: Page):
    page.goto("/accounts/signup/")
    field(page, "Username").fill("mismatch")
    field(page, "Email").fill("mismatch@example.com")
    field(page, "Password").fill("a-long-browser-password-42")
    field(page, "Password confirmation").fill("another-long-password-43")
    page.get_by_role("button", name="Sign up").click()

    confirmation = field(page, "Password confirmation")
    expect(confirmation).to_have_attribute("aria-invalid", "true")
    expect(confirmation).to_have_accessible_description(re.compile("didn.t match"))
    expect(field(page, "Username")).not_to_have_attribute("aria-invalid", "true")


def test_a_failed_sign_in_is_described_on_both_fields(page: Page):
    page.goto("/accounts/login/")
    field(page, "Username").fill("nobody-here")
    field(page, "Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("alert")).to_contain_text("correct username and password")
    for label in ("Username", "Password"):
        expect(field(page, label)).to_have_attribute("aria-invalid", "true")
        expect(field(page, label)).to_have_accessible_description(re.compile("correct username and password"))

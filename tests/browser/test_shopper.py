"""A shopper in Chromium: browse, search with a typo, cart, guest checkout, then an account that
shows the order placed as a guest; and the same checkout with the keyboard alone."""

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.shopper import (
    SHOPPER,
    add_to_cart,
    cart_row,
    field,
    fill_checkout,
    heading,
    main,
    open_product,
    order_number,
    tab_to,
)

pytestmark = [pytest.mark.browser, pytest.mark.stack]


def test_a_guest_checks_out_then_signs_up_and_finds_the_order(page: Page):
    page.goto("/")
    page.locator("nav.categories").get_by_role("link", name="Mugs").click()
    expect(heading(page)).to_have_text("Mugs")
    open_product(page, "Tea Bowl")
    add_to_cart(page)
    expect(page.get_by_role("status")).to_contain_text("Tea Bowl was added to your cart")

    # A typo in the search box still finds the notebook.
    search = page.get_by_role("searchbox", name="Search products")
    search.fill("doted notebok")
    search.press("Enter")
    expect(page).to_have_url(re.compile(r"/search/\?q=doted"))
    open_product(page, "Dotted Notebook")
    add_to_cart(page)

    tea_bowl = cart_row(page, "Tea Bowl")
    tea_bowl.get_by_role("spinbutton", name="Quantity").fill("3")
    tea_bowl.get_by_role("button", name="Update").click()
    expect(cart_row(page, "Tea Bowl").get_by_role("spinbutton", name="Quantity")).to_have_value("3")
    expect(cart_row(page, "Dotted Notebook").get_by_role("spinbutton", name="Quantity")).to_have_value("1")
    expect(page.get_by_role("link", name=re.compile(r"^Cart \(4\)$"))).to_be_visible()

    main(page).get_by_role("link", name="Checkout").click()
    expect(heading(page)).to_have_text("Checkout")
    fill_checkout(page)
    page.get_by_role("button", name="Place order").click()

    number = order_number(page)
    lines = main(page).get_by_role("row")
    expect(lines.filter(has_text="Tea Bowl")).to_contain_text("3")
    expect(lines.filter(has_text="Dotted Notebook")).to_contain_text("1")
    expect(main(page)).to_contain_text("Pending payment")
    expect(page.get_by_role("link", name=re.compile(r"^Cart \(0\)$"))).to_be_visible()

    # Signing up afterwards with the same e-mail address: the account shows the guest's order.
    page.get_by_role("link", name="Sign up").click()
    field(page, "Username").fill("casey")
    field(page, "Email").fill(SHOPPER["email"])
    field(page, "Password").fill("a-long-browser-password-42")
    field(page, "Password confirmation").fill("a-long-browser-password-42")
    page.get_by_role("button", name="Sign up").click()
    expect(heading(page)).to_have_text("My orders")
    main(page).get_by_role("link", name=number).click()
    expect(heading(page)).to_have_text(f"Order {number}")


def test_checkout_with_the_keyboard_alone(page: Page):
    """Tab to move, Enter to follow a link or press a button, Space for the payment choice;
    typing only into the fields."""
    page.goto("/product/ocean-poster/")
    tab_to(page, page.get_by_role("button", name="Add to cart"))
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/cart/$"))

    tab_to(page, main(page).get_by_role("link", name="Checkout"))
    page.keyboard.press("Enter")
    expect(heading(page)).to_have_text("Checkout")

    for label, value in [
        ("Email", "kim.keys@example.com"),
        ("Full name", "Kim Keys"),
        ("Address", "2 Tab Street"),
        ("Postal code", "54321"),
        ("City", "Enter"),
        ("Country", "Space"),
    ]:
        tab_to(page, field(page, label))
        page.keyboard.type(value)
    bank_transfer = page.get_by_role("radio", name="Bank transfer")
    tab_to(page, bank_transfer)
    page.keyboard.press("Space")
    expect(bank_transfer).to_be_checked()
    tab_to(page, page.get_by_role("button", name="Place order"))
    page.keyboard.press("Enter")

    order_number(page)
    expect(main(page).get_by_role("row").filter(has_text="Ocean Poster")).to_be_visible()

"""What a shopper does in the browser, step by step, for the browser tests to combine."""

import re

from playwright.sync_api import Locator, Page, expect

SHOPPER = {
    "email": "casey.browser@example.com",
    "full_name": "Casey Browser",
    "address": "1 Render Road",
    "postal_code": "12345",
    "city": "Viewport",
    "country": "Chromium",
}


def field(page: Page, label: str) -> Locator:
    """A form field by its label's exact text, with or without Django's trailing colon."""
    return page.get_by_label(re.compile(rf"^{re.escape(label)}:?$"))


def main(page: Page) -> Locator:
    return page.get_by_role("main")


def heading(page: Page) -> Locator:
    return page.get_by_role("heading", level=1)


def open_product(page: Page, name: str) -> None:
    main(page).get_by_role("link", name=name).first.click()
    expect(heading(page)).to_have_text(name)


def add_to_cart(page: Page, quantity: int = 1) -> None:
    page.get_by_role("spinbutton", name="Quantity").fill(str(quantity))
    page.get_by_role("button", name="Add to cart").click()
    expect(page).to_have_url(re.compile(r"/cart/$"))


def cart_row(page: Page, product_name: str) -> Locator:
    return main(page).get_by_role("row").filter(has=page.get_by_role("link", name=product_name))


def fill_checkout(page: Page, details: dict[str, str] = SHOPPER) -> None:
    field(page, "Email").fill(details["email"])
    field(page, "Full name").fill(details["full_name"])
    field(page, "Address").fill(details["address"])
    field(page, "Postal code").fill(details["postal_code"])
    field(page, "City").fill(details["city"])
    field(page, "Country").fill(details["country"])


def order_number(page: Page) -> str:
    """The number of the order the confirmation page shows."""
    expect(heading(page)).to_have_text(re.compile(r"^Order \S+$"))
    return heading(page).inner_text().removeprefix("Order ").strip()


def tab_to(page: Page, target: Locator, limit: int = 80) -> None:
    """Press Tab until `target` has the focus, as a keyboard user would; fail if it never does."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if target.evaluate("element => element === document.activeElement"):
            return
    raise AssertionError(f"{target} never got the focus after {limit} presses of Tab")

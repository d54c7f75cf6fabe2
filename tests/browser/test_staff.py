"""A staff user in Chromium: sign in to the admin, add a product with an image, and see it on
the storefront with the thumbnail that the Celery worker makes after the commit."""

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.shopper import field, heading, main
from tests.shop_http import STAFF_PASSWORD, STAFF_USER, png_image

pytestmark = [pytest.mark.browser, pytest.mark.stack]

# The worker's WebP thumbnails, wherever the media storage serves them from.
THUMBNAIL_PATTERN = r"/products/thumbs/[^\"' ]+\.webp"
THUMBNAIL = re.compile(THUMBNAIL_PATTERN)
WORKER_TIME_LIMIT_MS = 30_000

# Polls from inside the page (Playwright's wait_for_function): the product page's HTML, fetched
# again every half second, until it names a thumbnail.
THUMBNAIL_IN_PAGE = """async ([url, pattern]) => {
    const html = await (await fetch(url, {cache: "no-store"})).text();
    return new RegExp(pattern).test(html);
}"""


def test_a_product_added_in_the_admin_shows_on_the_storefront_with_its_thumbnail(page: Page):
    page.goto("/admin/")
    field(page, "Username").fill(STAFF_USER)
    field(page, "Password").fill(STAFF_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()

    page.goto("/admin/catalog/product/add/")
    field(page, "Category").select_option(label="Posters")
    field(page, "Name").press_sequentially("Browser Lamp Poster")  # typed: the admin's script reacts
    expect(field(page, "Slug")).to_have_value("browser-lamp-poster")  # the admin fills it in
    field(page, "SKU").fill("BROWSER-LAMP-1")
    field(page, "Description").fill("Added through the admin in Chromium.")
    field(page, "Price").fill("19.90")
    field(page, "Stock").fill("7")
    page.locator('input[name="images-0-image"]').set_input_files(
        {"name": "lamp.png", "mimeType": "image/png", "buffer": png_image()}
    )
    page.locator('input[name="images-0-alt_text"]').fill("A lamp drawn in noise")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")

    page.goto("/product/browser-lamp-poster/")
    expect(heading(page)).to_have_text("Browser Lamp Poster")
    page.wait_for_function(
        THUMBNAIL_IN_PAGE, arg=[page.url, THUMBNAIL_PATTERN], polling=500, timeout=WORKER_TIME_LIMIT_MS
    )
    page.reload()
    photo = main(page).get_by_role("img", name="A lamp drawn in noise").first
    expect(photo).to_have_attribute("src", THUMBNAIL)
    expect_loaded(photo)

    # The category's listing shows the new product with its (small) thumbnail.
    page.goto("/category/posters/")
    card_image = main(page).get_by_role("img", name="A lamp drawn in noise")
    expect(card_image).to_have_attribute("src", THUMBNAIL)
    expect_loaded(card_image)


def expect_loaded(image) -> None:
    """The browser fetched and decoded a thumbnail (through nginx's /media/), whichever of the
    `srcset` it chose: what it shows (currentSrc) is a WebP thumbnail with a natural size."""
    image.scroll_into_view_if_needed()
    expect(image).to_have_js_property("complete", True)
    assert image.evaluate("img => img.naturalWidth") > 0
    assert THUMBNAIL.search(image.evaluate("img => img.currentSrc"))

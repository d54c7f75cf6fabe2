"""On the runner's stack, through nginx: what staff change in the admin is on the storefront at
the next request, although the pages come from cached fragments (two gunicorn workers, each
with fragments in its own memory, and Redis)."""

import pytest

from tests.shop_http import (
    PRODUCT_NAME,
    PRODUCT_SLUG,
    browser,
    form_errors,
    form_value,
    png_image,
    staff_session,
    upload_product,
)

pytestmark = pytest.mark.stack


def seen_by_both_workers(visitor, url: str, times: int = 6) -> str:
    """The page, fetched often enough that both workers have cached its fragments."""
    pages = [visitor.get(url) for _ in range(times)]
    assert {page.status_code for page in pages} == {200}
    return pages[-1].text


def test_admin_edits_show_through_nginx_on_the_next_request(shared_stack):
    stack = shared_stack
    base = stack.url
    category_id = stack.add_staff_and_category()
    staff = staff_session(base)
    uploaded = upload_product(staff, base, category_id, ("front.png", png_image(), "image/png"))
    assert uploaded.status_code == 302, form_errors(uploaded.text)
    product_id = stack.manage(
        "shell", "--verbosity", "0", "-c",
        f"from shop.catalog.models import Product; print(Product.objects.get(slug='{PRODUCT_SLUG}').pk)",
    ).strip()  # fmt: skip

    visitor = browser(base)
    product_url, category_url = f"{base}/product/{PRODUCT_SLUG}/", f"{base}/category/mugs/"
    assert "In stock" in seen_by_both_workers(visitor, product_url)
    assert PRODUCT_NAME in seen_by_both_workers(visitor, category_url)

    # A stock adjustment in the admin: an UPDATE, no model signal.
    adjust_url = f"{base}/admin/catalog/product/{product_id}/adjust-stock/"
    token = form_value(staff.get(adjust_url).text, "csrfmiddlewaretoken")
    adjusted = staff.post(
        adjust_url, {"delta": "-17", "reason": "Count", "csrfmiddlewaretoken": token}, allow_redirects=False
    )
    assert adjusted.status_code == 302, form_errors(adjusted.text)
    for _ in range(4):  # whichever worker answers
        assert "Only 3 left" in visitor.get(product_url).text
        assert "Only 3 left" in visitor.get(category_url).text

    # A new product in the admin.
    second = upload_product(
        staff, base, category_id, ("back.png", png_image(), "image/png"), slug="second-mug"
    )
    assert second.status_code == 302, form_errors(second.text)
    for _ in range(4):
        assert "second-mug" in visitor.get(category_url).text

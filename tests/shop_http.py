"""A shopper and a staff user over HTTP, through nginx: the end-to-end tests of the runner
(tests/stack) and of the compose stacks (tests/docker) drive the shop the same way."""

import io
import re
import time

import requests
from PIL import Image

STAFF_USER = "stackadmin"
STAFF_PASSWORD = "stack-admin-password-0123"
PRODUCT_SLUG = "stack-mug"
PRODUCT_NAME = "Stack Mug"


def browser(base: str) -> requests.Session:
    """A session as a browser keeps one. Over HTTPS Django's CSRF check wants a Referer of the
    shop's own origin; the test certificates are self-signed."""
    session = requests.Session()
    session.headers["Referer"] = f"{base}/"
    # Not the environment's CA bundle (REQUESTS_CA_BUNDLE would override verify) or proxies:
    # the shop is on loopback.
    session.trust_env = False
    session.verify = False
    return session


def form_value(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} in the page"
    return match.group(1)


def form_errors(html: str) -> list[str]:
    """The error lists of a rendered Django form, for assertion messages."""
    return re.findall(r'<ul class="errorlist[^"]*"[^>]*>.*?</ul>', html, flags=re.DOTALL) or [html[:2000]]


def png_image() -> bytes:
    out = io.BytesIO()
    Image.effect_noise((320, 240), 60).convert("RGB").save(out, format="PNG")
    return out.getvalue()


def product_form(category_id: str, csrf_token: str, slug: str = PRODUCT_SLUG) -> dict[str, str]:
    """The admin's add-product form with one image inline (see tests/catalog/test_image_uploads.py)."""
    return {
        "csrfmiddlewaretoken": csrf_token,
        "category": category_id,
        "name": PRODUCT_NAME if slug == PRODUCT_SLUG else slug,
        "slug": slug,
        "sku": slug.upper(),
        "description": "A mug that survives restarts.",
        "price": "9.50",
        "stock": "20",
        "is_active": "on",
        "images-TOTAL_FORMS": "1",
        "images-INITIAL_FORMS": "0",
        "images-MIN_NUM_FORMS": "0",
        "images-MAX_NUM_FORMS": "1000",
        "images-0-alt_text": "front",
        "images-0-position": "0",
    }


def staff_session(base: str) -> requests.Session:
    session = browser(base)
    page = session.get(f"{base}/admin/login/?next=/admin/")
    response = session.post(
        f"{base}/admin/login/?next=/admin/",
        data={
            "username": STAFF_USER,
            "password": STAFF_PASSWORD,
            "next": "/admin/",
            "csrfmiddlewaretoken": form_value(page.text, "csrfmiddlewaretoken"),
        },
        allow_redirects=False,
    )
    assert response.status_code == 302, response.text[:2000]
    return session


def upload_product(
    session: requests.Session, base: str, category_id: str, image: tuple, slug: str = PRODUCT_SLUG
) -> requests.Response:
    page = session.get(f"{base}/admin/catalog/product/add/")
    assert page.status_code == 200
    return session.post(
        f"{base}/admin/catalog/product/add/",
        data=product_form(category_id, form_value(page.text, "csrfmiddlewaretoken"), slug),
        files={"images-0-image": image},
        allow_redirects=False,
    )


def add_to_cart(session: requests.Session, base: str, quantity: int, slug: str = PRODUCT_SLUG) -> int:
    page = session.get(f"{base}/product/{slug}/")
    assert page.status_code == 200
    product_id = int(re.search(r'action="/cart/add/(\d+)/"', page.text).group(1))
    response = session.post(
        f"{base}/cart/add/{product_id}/",
        data={"quantity": str(quantity), "csrfmiddlewaretoken": form_value(page.text, "csrfmiddlewaretoken")},
        allow_redirects=False,
    )
    assert response.status_code == 302
    return product_id


def place_order(session: requests.Session, base: str) -> str:
    response = post_checkout(session, base)
    assert response.status_code == 302, form_errors(response.text)
    return re.fullmatch(r"/orders/([^/]+)/", response.headers["Location"]).group(1)


def post_checkout(session: requests.Session, base: str, before_post=None) -> requests.Response:
    """The checkout form, filled in and sent (after `before_post()`, e.g. a barrier); the answer:
    302 to the order, or 200 with the form and a message (sold out)."""
    page = session.get(f"{base}/orders/checkout/")
    assert page.status_code == 200
    if before_post is not None:
        before_post()
    return session.post(
        f"{base}/orders/checkout/",
        data={
            "csrfmiddlewaretoken": form_value(page.text, "csrfmiddlewaretoken"),
            "idempotency_key": form_value(page.text, "idempotency_key"),
            "email": "customer@example.com",
            "full_name": "Casey Customer",
            "address_line1": "1 Volume Street",
            "postal_code": "12345",
            "city": "Persistence",
            "country": "Docker-less",
            "payment_method": "bank_transfer",
        },
        allow_redirects=False,
    )


def wait_for_thumbnail(
    session: requests.Session, base: str, timeout: float = 30, slug: str = PRODUCT_SLUG
) -> str:
    """The product page shows the large thumbnail once the worker has made it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = session.get(f"{base}/product/{slug}/").text
        found = re.search(r'src="(/media/products/thumbs/[^"]+\.webp)"', page)
        if found:
            return found.group(1)
        time.sleep(0.5)
    raise AssertionError("the worker made no thumbnail")


def assert_served_as_image(response: requests.Response) -> None:
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == "default-src 'none'"
    assert "Server" not in response.headers or response.headers["Server"] == "nginx"  # no version

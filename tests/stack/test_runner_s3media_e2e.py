"""End to end on the Docker-less runner with two backends (RUNNER_BACKENDS=2) and the product
images in an S3 bucket (MEDIA_STORAGE=s3, moto in server mode): what one backend stores, the
other shows and nginx serves from the bucket; carts and checkout work across both.
"""

import re
import socket
import threading

import pytest
import requests

from tests.conftest import new_media_bucket
from tests.shop_http import (
    PRODUCT_SLUG,
    add_to_cart,
    assert_served_as_image,
    browser,
    form_errors,
    png_image,
    post_checkout,
    staff_session,
    upload_product,
    wait_for_thumbnail,
)
from tests.stack.runner import StackRunner, make_data_root, remove_data_root, stack_environment

pytestmark = pytest.mark.stack

BUYERS = 20
SCARCE_STOCK = 3


def consecutive_free_ports(count: int) -> int:
    """The first of `count` ports in a row that nothing listens on right now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + count > 65535:
            continue
        sockets = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise AssertionError(f"no {count} free ports in a row")


@pytest.fixture
def media_bucket_for_stack(s3_endpoint):
    return new_media_bucket(s3_endpoint)


def two_backends_with_s3_media(s3_endpoint: str, media) -> dict[str, str]:
    """The runner's environment for two gunicorns sharing product images in `media` (a bucket)."""
    return {
        "RUNNER_BACKENDS": "2",
        "RUNNER_APP_PORT": str(consecutive_free_ports(2)),
        "MEDIA_STORAGE": "s3",
        "MEDIA_S3_BUCKET": media.name,
        "MEDIA_S3_PREFIX": media.prefix,
        "MEDIA_S3_ENDPOINT_URL": s3_endpoint,
        "MEDIA_S3_ACCESS_KEY_ID": "testing",
        "MEDIA_S3_SECRET_ACCESS_KEY": "testing",
    }


@pytest.fixture
def stack(tmp_path, stack_programs, s3_endpoint, media_bucket_for_stack):
    root = make_data_root()
    env = stack_environment(root)
    env.update(two_backends_with_s3_media(s3_endpoint, media_bucket_for_stack))
    runner = StackRunner(env, tmp_path / "stack.log")
    try:
        yield runner
    finally:
        runner.kill_everything()
        remove_data_root(root)


def make_scarce_product(stack) -> str:
    code = (
        "from shop.catalog.models import Category, Product; "
        f"Product.objects.create(category=Category.objects.get(slug='mugs'), name='Scarce Mug', "
        f"slug='scarce-mug', sku='SCARCE-1', price='5.00', stock={SCARCE_STOCK})"
    )
    stack.manage("shell", "--verbosity", "0", "-c", code)
    return "scarce-mug"


def buy_concurrently(bases: list[str], slug: str) -> list[requests.Response]:
    """Each buyer fills the cart through one backend and checks out through the other; every
    checkout is sent at the same moment."""
    barrier = threading.Barrier(BUYERS)
    results: list = [None] * BUYERS

    def buyer(index: int) -> None:
        try:
            session = browser(bases[0])
            add_to_cart(session, bases[index % 2], quantity=1, slug=slug)
            results[index] = post_checkout(session, bases[(index + 1) % 2], before_post=barrier.wait)
        except Exception as error:  # collected and asserted on below
            results[index] = error
            barrier.abort()

    threads = [threading.Thread(target=buyer, args=(index,)) for index in range(BUYERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_two_backends_share_images_in_the_bucket_carts_and_stock(stack, media_bucket_for_stack):
    bucket = media_bucket_for_stack
    stack.start(timeout=300)  # first start: initdb, migrations, collectstatic; a loaded machine is slow
    via_nginx = stack.url
    first, second = (f"http://{address}" for address in stack.config.backend_addresses)
    # /readyz answered through the first backend; the second may still be inside supervisord's startsecs.
    stack.wait_until(lambda: stack.states()["app:web2"] == "RUNNING", 60)

    category_id = stack.add_staff_and_category()

    # A staff user uploads through the first backend: the image goes to the bucket, not to disk.
    staff = staff_session(first)
    uploaded = upload_product(staff, first, category_id, ("front.png", png_image(), "image/png"))
    assert uploaded.status_code == 302, form_errors(uploaded.text)
    names = bucket.names()
    assert len(names) == 1
    assert re.fullmatch(r"products/[0-9a-f]{2}/[0-9a-f]{64}\.png", names[0])
    assert not [path for path in (stack.config.data / "uploads").rglob("*") if path.is_file()]

    # The second backend shows the product; nginx serves its image from the bucket, with the
    # shop's headers; the worker's thumbnails too.
    visitor = browser(via_nginx)
    page = visitor.get(f"{second}/product/{PRODUCT_SLUG}/")
    assert page.status_code == 200
    image_url = re.search(r'href="(/media/products/[0-9a-f]{2}/[0-9a-f]{64}\.png)"', page.text).group(1)
    image = visitor.get(f"{via_nginx}{image_url}")
    assert_served_as_image(image)
    assert image.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert image.content == bucket.read(names[0])
    thumbnail = visitor.get(f"{via_nginx}{wait_for_thumbnail(visitor, second)}")
    assert thumbnail.status_code == 200
    assert thumbnail.headers["Content-Type"] == "image/webp"
    assert thumbnail.headers["X-Content-Type-Options"] == "nosniff"
    assert thumbnail.headers["Content-Security-Policy"] == "default-src 'none'"
    # Which backend answered: each gunicorn logs its own requests.
    assert "POST /admin/catalog/product/add/" in stack.program_log("web")
    assert f"GET /product/{PRODUCT_SLUG}/" in stack.program_log("web2")

    # nginx balances over both.
    for number in range(6):
        assert visitor.get(f"{via_nginx}/?via=nginx-{number}").status_code == 200
    assert "via=nginx" in stack.program_log("web")
    assert "via=nginx" in stack.program_log("web2")

    # A cart filled through one backend is the same cart on the other (sessions in Redis).
    shopper = browser(via_nginx)
    add_to_cart(shopper, first, quantity=2)
    assert 'name="quantity" value="2"' in shopper.get(f"{second}/cart/").text

    # 20 buyers for 3 items, each through both backends: exactly 3 orders, never more.
    results = buy_concurrently([first, second], make_scarce_product(stack))
    errors = [result for result in results if isinstance(result, Exception)]
    assert not errors, errors
    orders = [response for response in results if response.status_code == 302]
    sold_out = [
        response for response in results if response.status_code == 200 and "sold out" in response.text
    ]
    assert (len(orders), len(sold_out)) == (SCARCE_STOCK, BUYERS - SCARCE_STOCK), [
        r.status_code for r in results
    ]
    counted = stack.manage(
        "shell", "--verbosity", "0", "-c",
        "from shop.catalog.models import Product; from shop.orders.models import Order; "
        "print(Product.objects.get(slug='scarce-mug').stock, "
        "Order.objects.filter(lines__product__slug='scarce-mug').count())",
    ).split()  # fmt: skip
    assert counted == ["0", str(SCARCE_STOCK)]

    # One backend stops: nginx keeps serving the shop through the other.
    stack.ctl("stop", "app:web2")
    assert all(visitor.get(f"{via_nginx}/?after-stop={n}").status_code == 200 for n in range(4))

    assert stack.stop() == 0
    assert stack.leftover_processes() == []

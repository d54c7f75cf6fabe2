"""End to end on the Docker-less runner: the shop through nginx, and data that survives a restart.

Real PostgreSQL, Redis (AOF), gunicorn, Celery and nginx, started by `python -m ops.runner`
into a fresh DATA_PATH on free loopback ports, stopped with Ctrl-C (SIGINT), started again.
"""

import re
import subprocess
import sys
import time

import psycopg
import pytest
import requests

from ops.runner import PROJECT_ROOT
from tests.shop_http import (
    PRODUCT_NAME,
    PRODUCT_SLUG,
    add_to_cart,
    assert_served_as_image,
    form_errors,
    place_order,
    png_image,
    staff_session,
    upload_product,
    wait_for_thumbnail,
)

pytestmark = pytest.mark.stack


def superuser_connection(stack, dbname: str = "postgres") -> psycopg.Connection:
    config = stack.config
    return psycopg.connect(
        host="127.0.0.1",
        port=config.postgres_port,
        user=config.postgres_user,
        password=config.postgres_password,
        dbname=dbname,
        autocommit=True,
    )


def assert_the_app_role_owns_the_shop(stack) -> None:
    """database/init/02-roles.sh's roles: the app role no superuser and no CREATEDB, owner of the
    shop database and of every table in it; the backup role no superuser, member of the app role."""
    with superuser_connection(stack) as conn:
        roles = conn.execute(
            "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolcanlogin FROM pg_roles "
            "WHERE rolname IN ('shop_app', 'shop_backup') ORDER BY 1"
        ).fetchall()
        assert roles == [("shop_app", False, False, False, True), ("shop_backup", False, True, False, True)]
        member = "SELECT pg_has_role('shop_backup', 'shop_app', 'MEMBER')"
        assert conn.execute(member).fetchone()[0] is True
        owner = "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'shop'"
        assert conn.execute(owner).fetchone()[0] == "shop_app"
    with superuser_connection(stack, "shop") as conn:
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class c "
            "WHERE relnamespace = 'public'::regnamespace "
            "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')"
        )
        assert {row[0] for row in owners} == {"shop_app"}


def test_shop_through_nginx_and_data_survives_a_restart(stack):
    timings = {"first start": stack.start()}
    # The first start made the roles; the shop connects as the app role, which owns its tables.
    assert_the_app_role_owns_the_shop(stack)
    base = stack.url
    visitor = requests.Session()  # a passer-by

    # The storefront answers through nginx; the static files come from nginx itself.
    home = visitor.get(f"{base}/")
    assert home.status_code == 200
    assert home.headers["Server"] == "nginx"
    # The page names the hashed copy (ManifestStaticFilesStorage), which may be cached for good.
    css_url = re.search(r'href="(/static/css/shop\.[0-9a-f]{12}\.css)"', home.text).group(1)
    css = visitor.get(f"{base}{css_url}")
    assert css.status_code == 200
    assert css.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert "max-age=3600" in visitor.get(f"{base}/static/css/shop.css").headers["Cache-Control"]

    # The image's container healthcheck works against gunicorn as it runs.
    probe = subprocess.run(
        [sys.executable, "ops/healthcheck.py"],
        cwd=PROJECT_ROOT,
        env={**stack.config.app_environment(stack.env)},
        check=False,
    )
    assert probe.returncode == 0

    # A staff user uploads a product image through the admin (through nginx).
    category_id = stack.add_staff_and_category()
    staff = staff_session(base)
    uploaded = upload_product(staff, base, category_id, ("front.png", png_image(), "image/png"))
    assert uploaded.status_code == 302, form_errors(uploaded.text)

    # nginx serves it from /media/, as an image that a browser must not sniff.
    product_page = visitor.get(f"{base}/product/{PRODUCT_SLUG}/").text
    image_url = re.search(r'href="(/media/products/[0-9a-f]{2}/[0-9a-f]{64}\.png)"', product_page).group(1)
    image = visitor.get(f"{base}{image_url}")
    assert_served_as_image(image)
    assert "immutable" in image.headers["Cache-Control"]
    # The Celery worker makes the thumbnails (WebP), which nginx serves the same way.
    thumbnail = visitor.get(f"{base}{wait_for_thumbnail(visitor, base)}")
    assert thumbnail.status_code == 200
    assert thumbnail.headers["Content-Type"] == "image/webp"
    assert thumbnail.headers["X-Content-Type-Options"] == "nosniff"
    # Anything in the uploads that is not an image, or is hidden, is never served.
    uploads = stack.config.data / "uploads"
    (uploads / "products" / "evil.html").write_text("<script>alert(1)</script>")
    (uploads / "products" / ".incoming-x.png").write_bytes(image.content)
    assert visitor.get(f"{base}/media/products/evil.html").status_code == 404
    assert visitor.get(f"{base}/media/products/.incoming-x.png").status_code == 404

    # A customer places an order, then puts something in the cart again.
    customer = requests.Session()
    product_id = add_to_cart(customer, base, quantity=2)
    order_number = place_order(customer, base)
    assert customer.get(f"{base}/orders/{order_number}/").status_code == 200
    add_to_cart(customer, base, quantity=3)

    # nginx refuses a 12 MB upload itself (413); a 10 MB one still reaches the shop, which
    # answers with its own message.
    megabyte = 1024 * 1024
    too_big = upload_product(staff, base, category_id, ("big.jpg", b"\xff" * (12 * megabyte), "image/jpeg"))
    assert too_big.status_code == 413
    assert "nginx" in too_big.text
    at_limit = upload_product(staff, base, category_id, ("max.jpg", b"\xff" * (10 * megabyte), "image/jpeg"))
    assert at_limit.status_code == 200
    assert "not one of them" in at_limit.text

    # Stop everything (Ctrl-C) and nothing is left running.
    began = time.monotonic()
    assert stack.stop() == 0
    timings["stop"] = time.monotonic() - began
    assert stack.leftover_processes() == []

    assert list((stack.config.data / "redis" / "appendonlydir").glob("*.aof"))  # the carts are here

    timings["second start"] = stack.start()

    # The order (PostgreSQL), the image (uploads) and the cart (Redis AOF, same session cookie).
    order_page = customer.get(f"{base}/orders/{order_number}/")
    assert order_page.status_code == 200
    assert order_number in order_page.text
    cart_page = customer.get(f"{base}/cart/")
    assert PRODUCT_NAME in cart_page.text
    assert f'action="/cart/update/{product_id}/"' in cart_page.text
    assert 'name="quantity" value="3"' in cart_page.text
    image_again = visitor.get(f"{base}{image_url}")
    assert_served_as_image(image_again)
    assert image_again.content == image.content
    assert order_number in staff.get(f"{base}/admin/orders/order/").text  # the staff session too

    # A backup of the running stack; then the order and the image are lost, and a restore
    # brings both back while gunicorn keeps running (it reconnects to the swapped-in database).
    set_id = stack.manage("backup_now", "--no-upload").strip().splitlines()[-1]
    assert set_id in stack.manage("list_backups", "--source", "local")
    stack.manage(
        "shell",
        "-c",
        f"from shop.orders.models import Order; Order.objects.filter(number='{order_number}').delete()",
    )
    (uploads / image_url.removeprefix("/media/")).unlink()
    assert customer.get(f"{base}/orders/{order_number}/").status_code == 404
    assert visitor.get(f"{base}{image_url}").status_code == 404
    with superuser_connection(stack) as conn:  # the running shop's sessions
        shop_users = conn.execute(
            "SELECT DISTINCT usename FROM pg_stat_activity "
            "WHERE datname = 'shop' AND backend_type = 'client backend'"
        )
        assert {row[0] for row in shop_users} == {"shop_app"}
    began = time.monotonic()
    restored = stack.manage("restore_backup", "--latest", "--yes")
    timings["restore"] = time.monotonic() - began
    assert customer.get(f"{base}/orders/{order_number}/").status_code == 200
    assert visitor.get(f"{base}{image_url}").content == image.content
    # The restore ran as the backup role, which may not create pg_stat_statements (database/init
    # made it as the superuser): it says so, and the app role owns everything restored.
    assert "Left out: extension(s) pg_stat_statements" in restored
    assert_the_app_role_owns_the_shop(stack)

    assert stack.stop() == 0
    assert stack.leftover_processes() == []
    print("stack timings (s):", {name: round(seconds, 1) for name, seconds in timings.items()})

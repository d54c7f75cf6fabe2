"""A continuous load through the shop's front door: orders one after the other and, now and then,
a new product with its image uploaded through the admin. The point-in-time recovery drills (the
runner's, tests/stack/test_runner_pitr.py, and the compose stack's,
tests/docker/test_compose_pitr.py) and the benchmark (ops/bench/pitr.py) run it until their
disaster, then check what came back against what it recorded as answered."""

import threading
import time
from datetime import UTC, datetime

import requests

from tests.shop_http import add_to_cart, browser, place_order, png_image, staff_session, upload_product


class Load:
    """Orders (and every sixth one a new product with its image) placed one after the other at
    `base` (the shop through nginx); the staff user must exist, `category_id` is the products'."""

    def __init__(self, base: str, category_id: str):
        self.base = base
        self.category_id = category_id
        self.staff = staff_session(self.base)
        self.customer = browser(self.base)
        self.orders: list[tuple[str, datetime]] = []  # (number, answered at): committed before
        self.products: list[str] = []
        self.products_added: list[datetime] = []  # when each product's upload was answered
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def add_product(self) -> None:
        slug = f"pitr-mug-{len(self.products)}"
        image = (f"{slug}.png", png_image() + slug.encode(), "image/png")  # a distinct file each
        response = upload_product(self.staff, self.base, self.category_id, image, slug=slug)
        assert response.status_code == 302, response.text[:1000]
        self.products.append(slug)
        self.products_added.append(datetime.now(UTC))

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                if len(self.orders) % 6 == 5:
                    self.add_product()
                add_to_cart(self.customer, self.base, 1, slug=self.products[-1])
                number = place_order(self.customer, self.base)
                self.orders.append((number, datetime.now(UTC)))
            except (AssertionError, requests.RequestException, AttributeError) as exc:
                self.errors.append(repr(exc))
                time.sleep(0.2)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(60)

#!/usr/bin/env python
"""Mixed load on the Docker-less stack: shoppers browse, search, fill carts and check out at
once, through nginx; then the database is checked against what the shoppers saw.

Starts `python -m ops.runner` (PostgreSQL, Redis, gunicorn with its 2 workers, Celery, nginx) in
a fresh data directory on free loopback ports (as tests/stack does), seeds the benchmark's
1000-product catalog (ops/bench/storefront.py: stock 0-39 per product, so shoppers run some
products out), and runs --clients shoppers for --seconds. Each shopper loops: the home page,
a category page, a search, a product page, adds it to the cart, and about one time in three
checks out as a guest.

Prints the responses by status class and the latency (p50, p99, max) per step, then checks:
the orders in the database are exactly the checkouts the shoppers saw succeed, no stock is
below zero, and the stock consumed equals the quantities ordered, per product. Zero 5xx is the
bar: the exit status is 1 if any check fails or any 5xx (or connection error) was seen.

    .venv/bin/python ops/bench/mixed_load.py                 # 64 shoppers, 60 s
    .venv/bin/python ops/bench/mixed_load.py --clients 16 --seconds 20
"""

import argparse
import collections
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ops.bench.storefront import PRODUCTS, SEARCH_WORDS, page_paths  # noqa: E402
from tests.shop_http import browser, form_value  # noqa: E402
from tests.stack.runner import StackRunner, make_data_root, remove_data_root, stack_environment  # noqa: E402

SEED = "from ops.bench.storefront import seed_catalog; seed_catalog()"
CHECKOUT_FORM = {
    "email": "load@example.com",
    "full_name": "Load Shopper",
    "address_line1": "1 Queue Street",
    "postal_code": "12345",
    "city": "Throughput",
    "country": "Benchland",
    "payment_method": "bank_transfer",
}
ORDER_LOCATION = re.compile(r"/orders/([^/]+)/$")


class Tally:
    """Status classes and latencies per step, and the checkouts seen, shared by the shoppers."""

    def __init__(self):
        self.lock = threading.Lock()
        self.statuses = collections.defaultdict(collections.Counter)
        self.latencies = collections.defaultdict(list)
        self.orders_seen: dict[str, dict[int, int]] = {}  # order number -> {product id: quantity}
        self.checkouts_refused = 0

    def record(self, step: str, status: str, seconds: float) -> None:
        with self.lock:
            self.statuses[step][status] += 1
            self.latencies[step].append(seconds)


class Shopper:
    def __init__(self, base: str, tally: Tally, seed: int):
        self.base, self.tally, self.rng = base, tally, random.Random(seed)  # noqa: S311  (not secret)
        self.session = browser(base)
        self.cart: dict[int, int] = {}

    def request(self, step: str, method: str, path: str, **kwargs) -> requests.Response | None:
        started = time.monotonic()
        try:
            response = self.session.request(
                method, f"{self.base}{path}", timeout=120, allow_redirects=False, **kwargs
            )
        except requests.RequestException as error:
            self.tally.record(step, type(error).__name__, time.monotonic() - started)
            return None
        self.tally.record(step, f"{response.status_code // 100}xx", time.monotonic() - started)
        return response

    def round(self) -> None:
        paths = page_paths()
        self.request("home", "GET", "/")
        self.request("category", "GET", self.rng.choice(paths["category"]))
        self.request("search", "GET", f"/search/?q={self.rng.choice(SEARCH_WORDS)}")
        product = self.rng.randrange(PRODUCTS)
        page = self.request("product", "GET", f"/product/product-{product}/")
        if page is None or page.status_code != 200:
            return
        found = re.search(r'action="/cart/add/(\d+)/"', page.text)
        if found is None:
            return  # sold out: no form
        product_id, quantity = int(found.group(1)), self.rng.randint(1, 3)
        data = {
            "quantity": str(quantity),
            "csrfmiddlewaretoken": form_value(page.text, "csrfmiddlewaretoken"),
        }
        added = self.request("add to cart", "POST", f"/cart/add/{product_id}/", data=data)
        if added is not None and added.status_code == 302:
            self.cart[product_id] = self.cart.get(product_id, 0) + quantity
        if self.cart and self.rng.random() < 1 / 3:
            self.checkout()

    def checkout(self) -> None:
        page = self.request("checkout page", "GET", "/orders/checkout/")
        if page is None or page.status_code != 200:
            return
        data = {
            **CHECKOUT_FORM,
            "csrfmiddlewaretoken": form_value(page.text, "csrfmiddlewaretoken"),
            "idempotency_key": form_value(page.text, "idempotency_key"),
        }
        response = self.request("checkout", "POST", "/orders/checkout/", data=data)
        if response is None:
            return
        placed = ORDER_LOCATION.search(response.headers.get("Location", ""))
        if response.status_code == 302 and placed:
            with self.tally.lock:
                self.tally.orders_seen[placed.group(1)] = dict(self.cart)
            self.cart = {}
        elif response.status_code == 200 and "Not enough stock" in response.text:
            with self.tally.lock:
                self.tally.checkouts_refused += 1
            self.cart = {}  # this shopper gives up; the next round starts a new cart
            self.session.cookies.clear()


def run_shoppers(base: str, clients: int, seconds: float) -> Tally:
    tally = Tally()
    deadline = time.monotonic() + seconds

    def shop(seed: int) -> None:
        shopper = Shopper(base, tally, seed)
        while time.monotonic() < deadline:
            shopper.round()

    threads = [threading.Thread(target=shop, args=(seed,)) for seed in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally


def database_facts(stack: StackRunner) -> dict:
    config = stack.config
    with psycopg.connect(
        host="127.0.0.1",
        port=config.postgres_port,
        user=config.postgres_user,
        password=config.postgres_password,
        dbname=config.postgres_db,
    ) as conn:
        orders = {number: {} for (number,) in conn.execute("SELECT number FROM orders_order")}
        lines = conn.execute(
            "SELECT o.number, l.product_id, l.quantity FROM orders_orderline l "
            "JOIN orders_order o ON o.id = l.order_id"
        )
        for number, product_id, quantity in lines:
            orders[number][product_id] = orders[number].get(product_id, 0) + quantity
        stock = dict(conn.execute("SELECT id, stock FROM catalog_product"))
    return {"orders": orders, "stock": stock}


def print_responses(tally: Tally, clients: int, seconds: float) -> collections.Counter:
    print(f"\n{clients} shoppers for {seconds:g} s through nginx (runner stack, gunicorn 2 workers)")
    print(f"{'step':<14} {'requests':>8}  {'status classes':<34} {'p50 ms':>7} {'p99 ms':>8} {'max ms':>8}")
    total = collections.Counter()
    for step, statuses in tally.statuses.items():
        latencies = sorted(tally.latencies[step])
        p50, p99 = (
            statistics.median(latencies),
            latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        )
        classes = ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items()))
        print(
            f"{step:<14} {sum(statuses.values()):>8}  {classes:<34} {1000 * p50:>7.0f} "
            f"{1000 * p99:>8.0f} {1000 * latencies[-1]:>8.0f}"
        )
        total.update(statuses)
    print("all steps:", ", ".join(f"{status}: {count}" for status, count in sorted(total.items())))
    print(
        f"checkouts: {len(tally.orders_seen)} succeeded, {tally.checkouts_refused} refused (not enough stock)"
    )
    return total


def database_failures(tally: Tally, before: dict, after: dict) -> list[str]:
    """What the database says against what the shoppers saw."""
    failures = []
    new_orders = {n: lines for n, lines in after["orders"].items() if n not in before["orders"]}
    only_in_database = sorted(set(new_orders) - set(tally.orders_seen))
    only_seen = sorted(set(tally.orders_seen) - set(new_orders))
    if only_in_database or only_seen:
        failures.append(
            f"orders in the database ({len(new_orders)}) differ from the checkouts seen to succeed "
            f"({len(tally.orders_seen)}): only in the database {only_in_database[:5]}, "
            f"only seen {only_seen[:5]}"
        )
    mismatched = [n for n, lines in tally.orders_seen.items() if new_orders.get(n) != lines]
    if mismatched:
        failures.append(
            f"{len(mismatched)} orders hold other quantities than the cart, e.g. {mismatched[:3]}"
        )
    negative = {pid: level for pid, level in after["stock"].items() if level < 0}
    if negative:
        failures.append(f"stock below zero: {negative}")
    ordered = collections.Counter()
    for lines in new_orders.values():
        ordered.update(lines)
    consumed = {pid: before["stock"][pid] - after["stock"][pid] for pid in before["stock"]}
    wrong = {pid: (used, ordered[pid]) for pid, used in consumed.items() if used != ordered[pid]}
    if wrong:
        failures.append(f"stock consumed differs from quantities ordered: {dict(list(wrong.items())[:5])}")
    print(
        f"database: {len(new_orders)} orders = {len(tally.orders_seen)} checkouts seen; lowest stock "
        f"{min(after['stock'].values())}; stock consumed {sum(consumed.values())} = quantities ordered "
        f"{sum(ordered.values())}"
    )
    return failures


def report(tally: Tally, before: dict, after: dict, clients: int, seconds: float) -> list[str]:
    total = print_responses(tally, clients, seconds)
    failures = []
    server_errors = total["5xx"] + sum(count for status, count in total.items() if not status.endswith("xx"))
    if server_errors:
        failures.append(f"{server_errors} responses were 5xx or connection errors")
    failures += database_failures(tally, before, after)
    print("checks:", "all passed" if not failures else "FAILED")
    for failure in failures:
        print("  -", failure)
    return failures


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=64, help="shoppers at once (64)")
    parser.add_argument("--seconds", type=float, default=60, help="how long they shop (60)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    root = make_data_root()
    stack = StackRunner(stack_environment(root), Path(tempfile.mkdtemp(prefix="mixed-load-")) / "stack.log")
    try:
        print("starting the runner stack ...", flush=True)
        stack.start()
        print(f"seeding {PRODUCTS} products ...", flush=True)
        stack.manage("shell", "-c", SEED)
        before = database_facts(stack)
        tally = run_shoppers(stack.url, args.clients, args.seconds)
        after = database_facts(stack)
        failures = report(tally, before, after, args.clients, args.seconds)
    finally:
        stack.kill_everything()
        remove_data_root(root)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

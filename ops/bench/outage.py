#!/usr/bin/env python
"""Benchmark: what customers get while PostgreSQL or Redis is down for a few seconds.

Serves the shop with gunicorn (production settings) on a PostgreSQL cluster and a redis-server
of its own (tests/private_services.py: never the machine's shared ones), lets a few customers
with a cart browse the home, cart and product pages, stops the service for --down seconds,
starts it again, and prints the responses by status, the Retry-After values, the shop's log
lines about the outage, the tracebacks logged, and whether every cart survived.

    .venv/bin/python ops/bench/outage.py postgres
    .venv/bin/python ops/bench/outage.py redis --down 7 --workers 2 --customers 4
    .venv/bin/python ops/bench/outage.py postgres --code /tmp/old-checkout   # another version
"""

import argparse
import collections
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.private_services import customer_with_cart, served_shop  # noqa: E402

PAGES = ("/", "/cart/", "/product/blue-mug/")


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("service", choices=["postgres", "redis"])
    parser.add_argument("--down", type=float, default=7.0, help="seconds the service is stopped (7)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--customers", type=int, default=4, help="customers browsing at once (4)")
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout to serve (this one)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    statuses, retry_after = collections.Counter(), collections.Counter()
    stop = threading.Event()

    def browse(customer: requests.Session) -> None:
        while not stop.is_set():
            for page in PAGES:
                try:
                    response = customer.get(f"{shop.url}{page}", timeout=15)
                except requests.RequestException as error:
                    statuses[error.__class__.__name__] += 1
                else:
                    statuses[response.status_code] += 1
                    if response.status_code == 503:
                        retry_after[response.headers.get("Retry-After")] += 1
                time.sleep(0.1)

    with served_shop(workers=args.workers, code=args.code) as shop:
        customers = [customer_with_cart(shop.url) for _ in range(args.customers)]
        threads = [threading.Thread(target=browse, args=(customer,)) for customer in customers]
        for thread in threads:
            thread.start()
        time.sleep(2)
        service = shop.service(args.service)
        started = time.monotonic()
        service.stop()
        time.sleep(args.down)
        service.start()
        down = time.monotonic() - started
        time.sleep(4)
        stop.set()
        for thread in threads:
            thread.join()
        log = shop.read_log()
        carts_kept = sum("Blue mug" in c.get(f"{shop.url}/cart/", timeout=10).text for c in customers)

    print(f"{args.service} down for {down:.1f} s, {args.workers} workers, {args.customers} customers")
    by_status = sorted(statuses.items(), key=str)
    print("responses:", ", ".join(f"{status}: {count}" for status, count in by_status))
    print("Retry-After:", dict(retry_after) or "-")
    for line in log.splitlines():
        if "shop.outage" in line:
            print("log:", line.split(": ", 1)[1])
    errors = log.count("Internal Server Error")
    print(f"tracebacks logged: {log.count('Traceback')}, 'Internal Server Error': {errors}")
    print(f"carts kept: {carts_kept} of {len(customers)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

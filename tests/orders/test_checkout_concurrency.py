"""Checkout under contention, against the real PostgreSQL: no overselling, no deadlock."""

import threading
import uuid

import pytest
from django.db import IntegrityError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from shop.catalog.models import Product
from shop.orders.models import Order, OrderStatus
from shop.orders.services import OutOfStock, change_status, place_order
from tests.conftest import CUSTOMER


def run_in_threads(count, target):
    """Start `count` threads at the same moment; return what each returned or raised."""
    barrier = threading.Barrier(count)
    results = [None] * count

    def worker(index):
        try:
            barrier.wait()
            results[index] = target(index)
        except Exception as error:  # collected and asserted on by the test
            results[index] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_checkouts_for_three_items_sell_exactly_three(make_product):
    product = make_product(stock=3)

    results = run_in_threads(
        20, lambda i: place_order({product.pk: 1}, CUSTOMER, "bank_transfer", uuid.uuid4().hex)
    )

    orders = [r for r in results if isinstance(r, Order)]
    refused = [r for r in results if isinstance(r, OutOfStock)]
    assert len(orders) == 3, results
    assert len(refused) == 17, results
    assert Order.objects.count() == 3
    product.refresh_from_db()
    assert product.stock == 0


def product_locking_queries(queries) -> list[str]:
    return [q["sql"] for q in queries if "FOR UPDATE" in q["sql"] and 'FROM "catalog_product"' in q["sql"]]


@pytest.fixture
def products_named_against_key_order(make_product):
    """Two products whose names sort opposite to their keys, so the model's default ordering
    (by name) cannot pass for key order."""
    first, second = make_product(name="Zebra mug"), make_product(name="Aardvark mug")
    assert first.pk < second.pk
    return first, second


@pytest.mark.django_db
def test_checkout_locks_product_rows_in_primary_key_order(products_named_against_key_order):
    """Row locks are taken in the order the locking query returns its rows: every checkout
    must lock in one global order (the key) so that two checkouts wait instead of deadlocking."""
    first, second = products_named_against_key_order

    with CaptureQueriesContext(connection) as captured:
        place_order({second.pk: 1, first.pk: 1}, CUSTOMER, "bank_transfer", uuid.uuid4().hex)

    (locking,) = product_locking_queries(captured.captured_queries)
    assert locking.endswith('ORDER BY "catalog_product"."id" ASC FOR UPDATE'), locking


@pytest.mark.django_db
def test_cancelling_locks_product_rows_in_primary_key_order(products_named_against_key_order):
    first, second = products_named_against_key_order
    order = place_order({second.pk: 1, first.pk: 1}, CUSTOMER, "bank_transfer", uuid.uuid4().hex)

    with CaptureQueriesContext(connection) as captured:
        change_status(order, OrderStatus.CANCELLED)

    locking = product_locking_queries(captured.captured_queries)
    assert locking, [q["sql"] for q in captured.captured_queries]
    assert all(sql.endswith('ORDER BY "catalog_product"."id" ASC FOR UPDATE') for sql in locking), locking


@pytest.mark.django_db(transaction=True)
def test_crossing_carts_do_not_deadlock(products_named_against_key_order):
    """Two carts naming the same products in opposite order, at the same moment.

    Locks taken row by row in cart order deadlock here (PostgreSQL's "deadlock detected" in
    every one of 3 runs, checked). One locking query cannot deadlock with itself whatever its
    ORDER BY, which is why the key order of that query is asserted on above.
    """
    first, second = products_named_against_key_order
    Product.objects.filter(pk__in=[first.pk, second.pk]).update(stock=50)
    carts = [{first.pk: 1, second.pk: 1}, {second.pk: 1, first.pk: 1}]

    results = run_in_threads(
        10, lambda i: place_order(carts[i % 2], CUSTOMER, "bank_transfer", uuid.uuid4().hex)
    )

    assert all(isinstance(r, Order) for r in results), results
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.stock, second.stock) == (40, 40)


@pytest.mark.django_db(transaction=True)
def test_the_same_checkout_replayed_concurrently_creates_one_order(make_product):
    product = make_product(stock=10)
    key = uuid.uuid4().hex

    results = run_in_threads(8, lambda i: place_order({product.pk: 2}, CUSTOMER, "bank_transfer", key))

    assert all(isinstance(r, Order) for r in results), results
    assert len({r.pk for r in results}) == 1
    product.refresh_from_db()
    assert product.stock == 8


@pytest.mark.django_db
def test_database_refuses_negative_stock_whatever_the_code_does(make_product):
    product = make_product(stock=1)
    with (
        pytest.raises(IntegrityError, match="product_stock_non_negative"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE catalog_product SET stock = -1 WHERE id = %s", [product.pk])
    assert Product.objects.get(pk=product.pk).stock == 1

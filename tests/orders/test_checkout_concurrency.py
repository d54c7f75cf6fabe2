"""Checkout under contention, against the real PostgreSQL: no overselling, no deadlock."""

import threading
import uuid

import pytest
from django.db import IntegrityError, connection, connections, transaction

from shop.catalog.models import Product
from shop.orders.models import Order
from shop.orders.services import OutOfStock, place_order
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


@pytest.mark.django_db(transaction=True)
def test_crossing_carts_do_not_deadlock(make_product):
    """Two carts naming the same products in opposite order: locks go in key order."""
    first, second = make_product(stock=50), make_product(stock=50)
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

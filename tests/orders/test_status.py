import uuid

import pytest

from shop.orders.models import OrderStatus
from shop.orders.services import InvalidTransition, change_status, place_order
from tests.conftest import CUSTOMER


@pytest.fixture
def order(make_product):
    product = make_product(stock=5)
    return place_order({product.pk: 2}, CUSTOMER, "cash_on_delivery", uuid.uuid4().hex), product


def test_order_moves_through_its_statuses_and_logs_each_step(order, admin_user):
    order, _ = order
    for status in (OrderStatus.PAID, OrderStatus.SHIPPED, OrderStatus.DELIVERED):
        order = change_status(order, status, actor=admin_user)

    assert [(e.from_status, e.to_status) for e in order.events.all()] == [
        ("", "pending"),
        ("pending", "paid"),
        ("paid", "shipped"),
        ("shipped", "delivered"),
    ]
    assert order.number.startswith("SO-")


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        ((), OrderStatus.SHIPPED),
        ((OrderStatus.PAID, OrderStatus.SHIPPED), OrderStatus.CANCELLED),
        ((OrderStatus.CANCELLED,), OrderStatus.PAID),
    ],
)
def test_invalid_transitions_are_refused(order, path, refused):
    order, _ = order
    for status in path:
        order = change_status(order, status)
    events_before = order.events.count()

    with pytest.raises(InvalidTransition):
        change_status(order, refused)

    order.refresh_from_db()
    assert order.status == (path[-1] if path else OrderStatus.PENDING)
    assert order.events.count() == events_before


def test_cancelling_restocks(order):
    order, product = order
    product.refresh_from_db()
    assert product.stock == 3

    change_status(order, OrderStatus.CANCELLED)

    product.refresh_from_db()
    assert product.stock == 5


def test_admin_action_marks_paid(order, admin_client):
    order, _ = order
    response = admin_client.post(
        "/admin/orders/order/", {"action": "mark_paid", "_selected_action": [order.pk]}
    )
    assert response.status_code == 302
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    assert order.events.last().actor.is_staff


def test_admin_order_page_shows_lines_and_history_read_only(order, admin_client):
    order, product = order
    response = admin_client.get(f"/admin/orders/order/{order.pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert product.sku in page
    assert "Order placed" in page
    assert 'name="lines-0-quantity"' not in page

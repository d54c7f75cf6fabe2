"""Placing orders and moving them through their statuses.

Views, admin actions, Celery tasks and tests all call these functions; none of them writes
orders or stock any other way.
"""

import hashlib
import logging
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction

from shop.catalog.models import Product, StockMovement
from shop.catalog.stock import adjust_stock
from shop.money import format_price
from shop.orders import payments
from shop.orders.models import ALLOWED_TRANSITIONS, Order, OrderEvent, OrderLine, OrderStatus

logger = logging.getLogger(__name__)


class CheckoutError(Exception):
    """A checkout that cannot go through; the message is meant for the customer."""


class EmptyCart(CheckoutError):
    pass


class OutOfStock(CheckoutError):
    def __init__(self, shortages: list[tuple[str, int, int]]):
        self.shortages = shortages
        parts = [
            f"{name}: {available} left, you asked for {wanted}" if available else f"{name} is sold out"
            for name, wanted, available in shortages
        ]
        super().__init__("Not enough stock. " + "; ".join(parts) + ". Nothing was ordered.")


class InvalidTransition(Exception):
    pass


@dataclass(frozen=True)
class CustomerDetails:
    email: str
    full_name: str
    address_line1: str
    postal_code: str
    city: str
    country: str
    address_line2: str = ""
    phone: str = ""


def scoped_idempotency_key(key: str, scope: str) -> str:
    """What is stored for a checkout's key: a hash of the key and of who sent it.

    The key travels in the checkout form, so it can leak (a shared screen, a proxy log). Bound
    to its sender, a key replayed by anyone else finds nothing and starts a checkout of its own
    instead of returning (and revealing) the first sender's order.
    """
    return hashlib.sha256(f"{scope}\0{key}".encode()).hexdigest()


def place_order(
    quantities: dict[int, int],
    customer: CustomerDetails,
    payment_method: str,
    idempotency_key: str,
    user=None,
    scope: str = "",
) -> Order:
    """Turn cart quantities into an order, or raise CheckoutError and change nothing.

    A replayed call with the same idempotency key and the same `scope` (who sent it: the web
    checkout passes the customer or the session) returns the order the first one created.
    """
    payments.get_provider(payment_method)
    idempotency_key = scoped_idempotency_key(idempotency_key, scope)
    existing = Order.objects.filter(idempotency_key=idempotency_key).first()
    if existing:
        return existing
    quantities = {int(pk): int(qty) for pk, qty in quantities.items() if int(qty) > 0}
    if not quantities:
        raise EmptyCart("Your cart is empty.")
    try:
        with transaction.atomic():
            return _place_order_locked(quantities, customer, payment_method, idempotency_key, user)
    except IntegrityError:
        # The same key committed by a concurrent request between our check and our insert.
        existing = Order.objects.filter(idempotency_key=idempotency_key).first()
        if existing:
            return existing
        raise


def _place_order_locked(quantities, customer, payment_method, idempotency_key, user) -> Order:
    # Lock in primary-key order: two checkouts that share products wait for each other
    # instead of deadlocking.
    products = list(Product.objects.select_for_update().filter(pk__in=quantities).order_by("pk"))
    # A concurrent replay of this checkout may have committed while we waited for the locks.
    existing = Order.objects.filter(idempotency_key=idempotency_key).first()
    if existing:
        return existing
    _check_stock(products, quantities)

    order = Order.objects.create(
        number=_next_order_number(),
        user=user if user is not None and user.is_authenticated else None,
        idempotency_key=idempotency_key,
        payment_method=payment_method,
        currency=settings.SHOP_CURRENCY,
        subtotal=Decimal("0.00"),
        total=Decimal("0.00"),
        **customer.__dict__,
    )
    lines = [
        OrderLine(
            order=order,
            product=product,
            product_name=product.name,
            sku=product.sku,
            unit_price=product.price,
            quantity=quantities[product.pk],
            line_total=product.price * quantities[product.pk],
        )
        for product in products
    ]
    OrderLine.objects.bulk_create(lines)
    for product in products:  # already locked, in key order
        adjust_stock(
            product,
            -quantities[product.pk],
            f"Order {order.number}",
            user,
            kind=StockMovement.Kind.ORDER,
            order=order,
        )

    order.subtotal = sum((line.line_total for line in lines), Decimal("0.00"))
    order.total = order.subtotal + order.shipping_cost
    order.save(update_fields=["subtotal", "total"])
    OrderEvent.objects.create(
        order=order, to_status=OrderStatus.PENDING, actor=order.user, note="Order placed"
    )
    _send_confirmation_after_commit(order)
    logger.info("order %s placed: %d lines, total %s", order.number, len(lines), order.total)
    return order


def _check_stock(products: list[Product], quantities: dict[int, int]) -> None:
    found = {product.pk for product in products if product.is_active}
    missing = set(quantities) - found
    if missing:
        raise CheckoutError("Some products in your cart are no longer sold. Please review your cart.")
    shortages = [
        (product.name, quantities[product.pk], product.stock)
        for product in products
        if product.stock < quantities[product.pk]
    ]
    if shortages:
        raise OutOfStock(shortages)


def _next_order_number() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval('orders_order_number_seq')")
        (value,) = cursor.fetchone()
    return f"SO-{value}"


def _send_confirmation_after_commit(order: Order) -> None:
    from shop.orders.tasks import send_order_confirmation

    order_id = order.pk
    transaction.on_commit(lambda: send_order_confirmation.delay(order_id))


def change_status(order: Order, new_status: str, actor=None, note: str = "") -> Order:
    """Move an order to `new_status` if allowed, record the event; cancelling restocks."""
    new_status = OrderStatus(new_status)
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order.pk)
        current = OrderStatus(order.status)
        if new_status not in ALLOWED_TRANSITIONS[current]:
            raise InvalidTransition(
                f"Order {order.number} is {current.label.lower()} and cannot become "
                f"{new_status.label.lower()}."
            )
        if new_status == OrderStatus.CANCELLED:
            _restock(order, actor)
        order.status = new_status
        order.save(update_fields=["status", "updated_at"])
        OrderEvent.objects.create(
            order=order, from_status=current, to_status=new_status, actor=actor, note=note
        )
    logger.info("order %s: %s -> %s", order.number, current, new_status)
    return order


def _restock(order: Order, actor=None) -> None:
    returned = {line.product_id: line.quantity for line in order.lines.all() if line.product_id}
    products = list(Product.objects.select_for_update().filter(pk__in=returned).order_by("pk"))
    for product in products:
        adjust_stock(
            product,
            returned[product.pk],
            f"Order {order.number} cancelled",
            actor,
            kind=StockMovement.Kind.CANCELLATION,
            order=order,
        )


def confirmation_email(order: Order) -> tuple[str, str]:
    provider = payments.get_provider(order.payment_method)
    lines = "\n".join(
        f"  {line.quantity} x {line.product_name} ({line.sku})  {price}"
        for line in order.lines.all()
        for price in [format_price(line.line_total, order.currency)]
    )
    subject = f"{settings.SHOP_NAME}: order {order.number} received"
    body = (
        f"Hello {order.full_name},\n\nthank you for your order {order.number}.\n\n{lines}\n\n"
        f"Total: {format_price(order.total, order.currency)}\n\n{provider.instructions(order)}\n"
    )
    return subject, body

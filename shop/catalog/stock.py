"""Stock changes: by a delta, under the product's row lock, each one recorded.

Checkout, cancellation and the admin all come here; nothing writes `Product.stock` otherwise
(`Product.save()` leaves it alone). A delta is added in the database (`stock = stock + delta`),
so two changes never overwrite each other, and the `CHECK (stock >= 0)` constraint refuses any
that would sell what is not there.
"""

import logging

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from shop.catalog.cache import bump_catalog_version
from shop.catalog.models import Product, StockMovement

logger = logging.getLogger(__name__)


class StockError(Exception):
    """A stock change that cannot be made; the message is meant for the person who asked."""


class InsufficientStock(StockError):
    pass


def adjust_stock(
    product: Product,
    delta: int,
    reason: str,
    user=None,
    *,
    kind: str = StockMovement.Kind.ADJUSTMENT,
    order=None,
) -> StockMovement:
    """Add `delta` (negative: remove) to the product's stock and record the movement.

    Runs in the caller's transaction when there is one (checkout: the rows are already locked,
    in key order); updates `product.stock` to the new level.
    """
    delta = int(delta)
    if delta == 0:
        raise StockError("A stock adjustment needs a quantity other than 0.")
    reason = reason.strip()
    if not reason:
        raise StockError("Say why the stock changes (a delivery, a count, breakage...).")
    with transaction.atomic():
        try:
            # A savepoint: the CHECK constraint's refusal must not break the caller's transaction.
            with transaction.atomic():
                updated = Product.objects.filter(pk=product.pk).update(
                    stock=F("stock") + delta, updated_at=timezone.now()
                )
        except IntegrityError as error:
            if "product_stock_non_negative" not in str(error):
                raise
            available = Product.objects.values_list("stock", flat=True).get(pk=product.pk)
            raise InsufficientStock(
                f"Cannot remove {-delta} of {product}: only {available} in stock."
            ) from None
        if not updated:
            raise StockError(f"{product} no longer exists.")
        # The UPDATE holds the row lock until commit: this is our own new level.
        stock_after = Product.objects.values_list("stock", flat=True).get(pk=product.pk)
        movement = StockMovement.objects.create(
            product=product,
            delta=delta,
            stock_after=stock_after,
            kind=kind,
            reason=reason[:200],
            order=order,
            user=user if user is not None and user.is_authenticated else None,
        )
        bump_catalog_version()  # an UPDATE sends no signal: stock states on pages change
    product.stock = product._stock_as_read = stock_after
    logger.info("stock of %s (%s): %+d -> %d, %s", product.sku, product.pk, delta, stock_after, reason)
    return movement

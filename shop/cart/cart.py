"""The cart: product IDs and quantities kept in the session (and so in Redis).

Only IDs and quantities live in the session; names and prices are always read from the
database, so a stale or tampered session can never set a price.
"""

from dataclasses import dataclass
from decimal import Decimal

from shop.catalog.models import Product

SESSION_KEY = "cart"
MAX_QUANTITY_PER_LINE = 99


@dataclass(frozen=True)
class CartLine:
    product: Product
    quantity: int

    @property
    def total(self) -> Decimal:
        return self.product.price * self.quantity


def _valid_items(raw) -> dict[str, int]:
    """The cart entries of a session, skipping anything malformed (old or tampered data)."""
    if not isinstance(raw, dict):
        return {}
    items = {}
    for key, quantity in raw.items():
        if str(key).isdigit() and isinstance(quantity, int) and 0 < quantity <= MAX_QUANTITY_PER_LINE:
            items[str(key)] = quantity
    return items


class Cart:
    def __init__(self, session):
        self.session = session
        self.items: dict[str, int] = _valid_items(session.get(SESSION_KEY))

    def add(self, product: Product, quantity: int = 1) -> None:
        self.set(product, self.items.get(str(product.pk), 0) + quantity)

    def set(self, product: Product, quantity: int) -> None:
        quantity = max(0, min(int(quantity), MAX_QUANTITY_PER_LINE))
        if quantity:
            self.items[str(product.pk)] = quantity
        else:
            self.items.pop(str(product.pk), None)
        self._save()

    def remove(self, product: Product) -> None:
        self.set(product, 0)

    def clear(self) -> None:
        self.items = {}
        self._save()

    def _save(self) -> None:
        self.session[SESSION_KEY] = self.items
        self.session.modified = True

    def quantities(self) -> dict[int, int]:
        return {int(pk): quantity for pk, quantity in self.items.items()}

    def lines(self) -> list[CartLine]:
        products = Product.objects.active().filter(pk__in=self.quantities()).prefetch_related("images")
        by_id = {product.pk: product for product in products}
        return [
            CartLine(by_id[pk], quantity) for pk, quantity in sorted(self.quantities().items()) if pk in by_id
        ]

    def total(self) -> Decimal:
        return sum((line.total for line in self.lines()), Decimal("0.00"))

    def count(self) -> int:
        return sum(self.items.values())

    def __bool__(self) -> bool:
        return bool(self.items)

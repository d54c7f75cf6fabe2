from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.core.validators import MinValueValidator
from django.db import models, transaction
from django.db.models.functions import Upper
from django.urls import reverse

from shop.catalog.images import THUMBNAIL_SIZES
from shop.catalog.storage import lock_image_files, product_image_storage

# The text-search configuration, named explicitly: to_tsvector() without one depends on a
# setting, so PostgreSQL could not index it.
SEARCH_CONFIG = "english"


def product_search_document() -> SearchVector:
    """The weighted document a product is searched by (shop/catalog/search.py)."""
    return (
        SearchVector("name", weight="A", config=SEARCH_CONFIG)
        + SearchVector("sku", weight="A", config=SEARCH_CONFIG)
        + SearchVector("description", weight="B", config=SEARCH_CONFIG)
    )


def trigram_index(field: str, name: str) -> GinIndex:
    """Serves `%>` (word similarity), the typo-tolerant match of search."""
    return GinIndex(OpClass(field, name="gin_trgm_ops"), name=name)


class Category(models.Model):
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=140, unique=True)
    description = models.TextField(blank=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "name"]
        verbose_name_plural = "categories"
        indexes = [trigram_index("name", "category_name_trgm")]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("catalog:category", args=[self.slug])


class ProductQuerySet(models.QuerySet):
    def active(self):
        return self.filter(is_active=True)


class ProductManager(models.Manager.from_queryset(ProductQuerySet)):
    def get_queryset(self):
        # The search document is only for the database's searching (shop/catalog/search.py):
        # reading it with every product would move and parse a tsvector per row for nothing.
        return super().get_queryset().defer("search_document")


class Product(models.Model):
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="products")
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=220, unique=True)
    sku = models.CharField("SKU", max_length=64, unique=True)
    description = models.TextField(blank=True)
    price = models.DecimalField(
        max_digits=10, decimal_places=2, validators=[MinValueValidator(Decimal("0.00"))]
    )
    # Set when a product is created; afterwards it changes only by deltas under a row lock
    # (shop/catalog/stock.py: adjust_stock), each one recorded as a StockMovement.
    stock = models.IntegerField(default=0, validators=[MinValueValidator(0)])
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Computed and stored by PostgreSQL on every write, so a search neither re-parses every
    # description nor ranks from scratch; GIN-indexed below.
    search_document = models.GeneratedField(
        expression=product_search_document(), output_field=SearchVectorField(), db_persist=True
    )

    objects = ProductManager()

    class Meta:
        ordering = ["name"]
        indexes = [
            GinIndex(fields=["search_document"], name="product_search_document"),
            trigram_index("name", "product_name_trgm"),
            models.Index(Upper("sku"), name="product_sku_upper"),
            # The listings' sort orders (shop/catalog/listing.py) within a category.
            models.Index(fields=["category", "price"], name="product_category_price"),
            models.Index(fields=["category", "-created_at"], name="product_category_newest"),
        ]
        constraints = [
            # The last line of defence: no code path can sell stock that is not there.
            models.CheckConstraint(condition=models.Q(stock__gte=0), name="product_stock_non_negative"),
            models.CheckConstraint(condition=models.Q(price__gte=0), name="product_price_non_negative"),
        ]

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        """Save everything but the stock of an existing product.

        Writing back the stock read with the row would undo every purchase made since (an
        admin form loaded before a checkout and saved after it). Changing it in memory and
        saving is a mistake, and refused.
        """
        if not self._state.adding:
            update_fields = kwargs.get("update_fields")
            stock = self.__dict__.get("stock")
            changed = stock != getattr(self, "_stock_as_read", stock)
            if changed or (update_fields is not None and "stock" in update_fields):
                raise ValueError(
                    f"The stock of {self} changes only through shop.catalog.stock.adjust_stock(), "
                    "which adds a delta under a row lock and records it."
                )
            if update_fields is None:
                kwargs["update_fields"] = [
                    field.name
                    for field in self._meta.concrete_fields
                    if not field.primary_key and not field.generated and field.name != "stock"
                ]
        super().save(*args, **kwargs)
        self._stock_as_read = self.__dict__.get("stock")

    def get_absolute_url(self):
        return reverse("catalog:product", args=[self.slug])

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._stock_as_read = instance.__dict__.get("stock")
        return instance

    def refresh_from_db(self, *args, **kwargs):
        super().refresh_from_db(*args, **kwargs)
        self._stock_as_read = self.__dict__.get("stock")

    @property
    def main_image(self):
        images = list(self.images.all())
        return images[0] if images else None

    @property
    def in_stock(self):
        return self.stock > 0

    @property
    def low_stock(self):
        """In stock, but few enough left (settings.LOW_STOCK_THRESHOLD) to tell the shopper."""
        return 0 < self.stock <= settings.LOW_STOCK_THRESHOLD


class ProductImage(models.Model):
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="images")
    # The name is the SHA-256 of the re-encoded bytes (shop/catalog/images.py), never the
    # uploader's; identical uploads share one file.
    image = models.ImageField(max_length=255, storage=product_image_storage)
    alt_text = models.CharField(max_length=200, blank=True)
    position = models.PositiveIntegerField(default=0)
    width = models.PositiveIntegerField(default=0, editable=False)
    height = models.PositiveIntegerField(default=0, editable=False)
    thumbnail_small = models.CharField(max_length=255, blank=True, editable=False)
    thumbnail_large = models.CharField(max_length=255, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self):
        return self.alt_text or self.image.name

    def save(self, *args, **kwargs):
        # Under the file lock: a concurrent clean-up must not delete a shared file that this
        # row is about to name (see catalog.services.delete_unreferenced_files).
        with transaction.atomic():
            lock_image_files([self.image.name])
            super().save(*args, **kwargs)

    def stored_names(self) -> list[str]:
        """Every file in the media storage that belongs to this image."""
        return [name for name in (self.image.name, self.thumbnail_small, self.thumbnail_large) if name]

    def _url_or_original(self, name: str) -> str:
        # Thumbnails are made after commit by a Celery task; until then, show the original.
        return product_image_storage.url(name) if name else self.image.url

    @property
    def small_url(self):
        return self._url_or_original(self.thumbnail_small)

    @property
    def large_url(self):
        return self._url_or_original(self.thumbnail_large)

    def rendition_width(self, label: str) -> int:
        """The width of a thumbnail: the longer side scaled down to its size, never up."""
        longest = max(self.width, self.height)
        size = THUMBNAIL_SIZES[label]
        return self.width if longest <= size else round(self.width * size / longest)

    @property
    def srcset(self) -> str:
        """Every stored rendition as an `srcset` ("url 300w, url 800w, url 1600w"), smallest
        first; "" while the width is unknown. Thumbnails appear once the worker has made them."""
        if not self.width:
            return ""
        candidates = {}
        for label, name in (("small", self.thumbnail_small), ("large", self.thumbnail_large)):
            if name:
                candidates.setdefault(self.rendition_width(label), product_image_storage.url(name))
        candidates.setdefault(self.width, self.image.url)
        return ", ".join(f"{url} {width}w" for width, url in sorted(candidates.items()))


class StockMovement(models.Model):
    """One change of a product's stock: who, when, why, by how much, and the level after it."""

    class Kind(models.TextChoices):
        ORDER = "order", "Order placed"
        CANCELLATION = "cancellation", "Order cancelled"
        ADJUSTMENT = "adjustment", "Adjustment"
        INITIAL = "initial", "Initial stock"

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="stock_movements")
    delta = models.IntegerField()
    stock_after = models.IntegerField()
    kind = models.CharField(max_length=20, choices=Kind.choices)
    reason = models.CharField(max_length=200)
    order = models.ForeignKey(
        "orders.Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="stock_movements"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["product", "-created_at"])]
        constraints = [
            models.CheckConstraint(condition=~models.Q(delta=0), name="stock_movement_delta_not_zero"),
        ]

    def __str__(self):
        return f"{self.product}: {self.delta:+d} ({self.reason})"

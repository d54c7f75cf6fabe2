from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models, transaction
from django.urls import reverse

from shop.catalog.storage import lock_image_files, product_image_storage


class Category(models.Model):
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=140, unique=True)
    description = models.TextField(blank=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "name"]
        verbose_name_plural = "categories"

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("catalog:category", args=[self.slug])


class ProductQuerySet(models.QuerySet):
    def active(self):
        return self.filter(is_active=True)


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

    objects = ProductQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
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
                    if not field.primary_key and field.name != "stock"
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
        """Every file in MEDIA_ROOT that belongs to this image."""
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

"""The browser tests' catalog, made inside the stack by `ops.runner manage shell` (one Django
start for everything): three categories, a few products in stock with small images, whose
thumbnails the stack's Celery worker makes, and a staff user."""

import io
from decimal import Decimal

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from shop.accounts.models import User
from shop.catalog.models import Category, Product
from shop.catalog.services import add_product_image

CATALOG = {
    "Mugs": ["Tea Bowl", "Travel Mug"],
    "Notebooks": ["Dotted Notebook", "Sketchbook"],
    "Posters": ["Ocean Poster", "City Poster"],
}
STOCK = 50
COLOURS = ["#0a58ca", "#198754", "#d63384", "#fd7e14", "#6f42c1", "#20c997"]


def small_png(colour: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (240, 240), colour).save(out, format="PNG")
    return out.getvalue()


def seed(staff_user: str, staff_password: str) -> None:
    number = 0
    for position, (category_name, product_names) in enumerate(CATALOG.items()):
        category = Category.objects.create(name=category_name, slug=category_name.lower(), position=position)
        for name in product_names:
            number += 1
            slug = name.lower().replace(" ", "-")
            product = Product.objects.create(
                category=category,
                name=name,
                slug=slug,
                sku=f"BROWSER-{number:03d}",
                description=f"A {name.lower()} for the browser tests.",
                price=Decimal("10.00") + number,
                stock=STOCK,
            )
            upload = SimpleUploadedFile(f"{slug}.png", small_png(COLOURS[number % len(COLOURS)]))
            add_product_image(product, upload, alt_text=name)
    User.objects.create_superuser(staff_user, "staff@example.com", staff_password)

"""A demo catalog: categories and products with images drawn by Pillow. Safe to run twice."""

import io
import random
from decimal import Decimal

from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from PIL import Image, ImageDraw

from shop.catalog.models import Category, Product
from shop.catalog.services import add_product_image

DEMO_CATALOG = {
    "Mugs": ["Morning Mug", "Espresso Cup", "Travel Mug", "Tea Bowl"],
    "Notebooks": ["Dotted Notebook", "Lined Notebook", "Sketchbook", "Pocket Journal"],
    "Posters": ["Mountain Poster", "Ocean Poster", "City Poster", "Forest Poster"],
}
PALETTE = ["#0a58ca", "#198754", "#d63384", "#fd7e14", "#6f42c1", "#20c997"]


def draw_product_image(label: str, colour: str, size: int = 900) -> bytes:
    image = Image.new("RGB", (size, size), colour)
    draw = ImageDraw.Draw(image)
    draw.ellipse((size * 0.2, size * 0.2, size * 0.8, size * 0.8), fill="white")
    draw.text((size * 0.3, size * 0.48), label, fill=colour, font_size=size // 18)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def seed_demo_catalog() -> tuple[int, int]:
    """Create what is missing of the demo catalog; return (products created, images added)."""
    rng = random.Random(42)  # noqa: S311  (demo prices, nothing secret)
    created = images = 0
    for position, (category_name, product_names) in enumerate(DEMO_CATALOG.items()):
        category, _ = Category.objects.get_or_create(
            slug=category_name.lower(), defaults={"name": category_name, "position": position}
        )
        for index, name in enumerate(product_names):
            with transaction.atomic():
                product, was_created = Product.objects.get_or_create(
                    sku=f"DEMO-{category_name[:3].upper()}-{index + 1:03d}",
                    defaults={
                        "category": category,
                        "name": name,
                        "slug": name.lower().replace(" ", "-"),
                        "description": f"A fine {name.lower()} from our demo catalog.",
                        "price": Decimal(rng.randrange(500, 5000)) / 100,
                        "stock": rng.randrange(0, 40),
                    },
                )
                created += was_created
                if not product.images.exists():
                    upload = SimpleUploadedFile(
                        f"{product.slug}.png", draw_product_image(name, PALETTE[index % len(PALETTE)])
                    )
                    add_product_image(product, upload, alt_text=name)
                    images += 1
    return created, images

from django.core.management.base import BaseCommand

from shop.catalog.demo import seed_demo_catalog


class Command(BaseCommand):
    help = "Fill the catalog with demo categories and products (with images). Safe to run again."

    def handle(self, *args, **options):
        products, images = seed_demo_catalog()
        self.stdout.write(
            self.style.SUCCESS(f"Demo catalog ready: {products} products and {images} images added.")
        )

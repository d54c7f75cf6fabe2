"""sitemap.xml: the home page, every category and every product a shopper can see
(django.contrib.sitemaps)."""

from django.contrib.sitemaps import Sitemap
from django.urls import reverse

from shop.catalog.models import Category, Product


class HomeSitemap(Sitemap):
    changefreq = "daily"
    priority = 1.0

    def items(self):
        return ["catalog:home"]

    def location(self, name):
        return reverse(name)


class CategorySitemap(Sitemap):
    changefreq = "daily"
    priority = 0.6

    def items(self):
        return Category.objects.order_by("pk").only("slug")


class ProductSitemap(Sitemap):
    changefreq = "weekly"
    priority = 0.8

    def items(self):
        return Product.objects.active().order_by("pk").only("slug", "updated_at")

    def lastmod(self, product):
        return product.updated_at


SITEMAPS = {"home": HomeSitemap, "categories": CategorySitemap, "products": ProductSitemap}

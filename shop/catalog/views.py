from django.conf import settings
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render

from shop.catalog.models import Category, Product
from shop.catalog.services import search_products


def _page(request, queryset):
    return Paginator(queryset, settings.PRODUCTS_PER_PAGE).get_page(request.GET.get("page"))


def home(request):
    products = Product.objects.active().prefetch_related("images").order_by("-created_at")[:8]
    return render(request, "catalog/home.html", {"products": products})


def category(request, slug):
    category = get_object_or_404(Category, slug=slug)
    products = category.products.active().prefetch_related("images")
    return render(request, "catalog/category.html", {"category": category, "page": _page(request, products)})


def search(request):
    query = request.GET.get("q", "").strip()[:200]
    products = search_products(query).prefetch_related("images") if query else Product.objects.none()
    return render(request, "catalog/search.html", {"query": query, "page": _page(request, products)})


def product(request, slug):
    product = get_object_or_404(Product.objects.active().prefetch_related("images"), slug=slug)
    return render(request, "catalog/product.html", {"product": product})

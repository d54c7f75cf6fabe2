from django.shortcuts import get_object_or_404, render

from shop.catalog.listing import CATEGORY_SORTS, SEARCH_SORTS, listing_page
from shop.catalog.models import Category, Product
from shop.catalog.search import clean_query, indexes_preferred, search_products


def _listing(request, queryset, sort_options):
    return listing_page(
        queryset,
        page_number=request.GET.get("page"),
        sort_key=request.GET.get("sort"),
        sort_options=sort_options,
    )


def home(request):
    products = (
        Product.objects.active()
        .select_related("category")
        .prefetch_related("images")
        .order_by("-created_at", "-pk")[:8]
    )
    return render(request, "catalog/home.html", {"products": products})


def category(request, slug):
    category = get_object_or_404(Category, slug=slug)
    listing = _listing(request, category.products.active(), CATEGORY_SORTS)
    return render(request, "catalog/category.html", {"category": category, "listing": listing})


def search(request):
    query = clean_query(request.GET.get("q"))
    if query:
        with indexes_preferred():
            listing = _listing(request, search_products(query), SEARCH_SORTS)
    else:
        listing = _listing(request, Product.objects.none(), SEARCH_SORTS)
    return render(request, "catalog/search.html", {"query": query, "listing": listing})


def product(request, slug):
    product = get_object_or_404(
        Product.objects.active().select_related("category").prefetch_related("images"), slug=slug
    )
    return render(request, "catalog/product.html", {"product": product})

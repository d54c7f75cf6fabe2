"""The storefront's catalog pages.

Each page's catalog content is a cached fragment (shop/catalog/templatetags/catalog_cache.py)
under the catalog version, read first: the objects are lazy (SimpleLazyObject), fetched only
when a fragment misses. A page served from fragments runs no SQL at all; a missing category or
product still raises Http404, from the fragment's rendering, inside the view.
"""

from django.shortcuts import get_object_or_404
from django.utils.functional import SimpleLazyObject

from shop.catalog.cache import request_catalog_version
from shop.catalog.listing import CATEGORY_SORTS, SEARCH_SORTS, listing_page
from shop.catalog.models import Category, Product
from shop.catalog.pages import no_parameters, render_catalog_page, shared_page
from shop.catalog.search import clean_query, indexes_preferred, search_products

LISTING_PARAMETERS = frozenset({"page", "sort", "q"})
SORT_KEYS = frozenset(option.key for option in (*CATEGORY_SORTS, *SEARCH_SORTS))
MAX_CACHED_PAGE_NUMBER = 9999


def _listing(request, queryset, sort_options):
    return listing_page(
        queryset,
        page_number=request.GET.get("page"),
        sort_key=request.GET.get("sort"),
        sort_options=sort_options,
    )


def listing_cache_key(request) -> str | None:
    """The query string as a fragment key (the page links repeat it), or None, which renders
    without caching: for any other parameter, a repeated one, an unknown sort or an odd page
    number, so that arbitrary URLs cannot fill the cache."""
    params = request.GET
    if set(params) - LISTING_PARAMETERS or any(len(params.getlist(name)) > 1 for name in params):
        return None
    page = params.get("page", "1")
    if not (page.isdigit() and 0 < int(page) <= MAX_CACHED_PAGE_NUMBER):
        return None
    if params.get("sort", next(iter(SORT_KEYS))) not in SORT_KEYS:
        return None
    return params.urlencode()


@shared_page(no_parameters)
def home(request):
    request_catalog_version(request)  # before any catalog query (see request_catalog_version)
    products = (
        Product.objects.active()
        .select_related("category")
        .prefetch_related("images")
        .order_by("-created_at", "-pk")[:8]
    )
    return render_catalog_page(request, "catalog/home.html", {"products": products})


@shared_page(listing_cache_key)
def category(request, slug):
    request_catalog_version(request)
    category = SimpleLazyObject(lambda: get_object_or_404(Category, slug=slug))
    listing = SimpleLazyObject(lambda: _listing(request, category.products.active(), CATEGORY_SORTS))
    context = {
        "slug": slug,
        "category": category,
        "listing": listing,
        "listing_key": listing_cache_key(request),
    }
    return render_catalog_page(request, "catalog/category.html", context)


@shared_page(listing_cache_key, process_only=True)  # search words never reach Redis
def search(request):
    request_catalog_version(request)
    query = clean_query(request.GET.get("q"))

    def search_listing():
        if not query:
            return _listing(request, Product.objects.none(), SEARCH_SORTS)
        with indexes_preferred():
            return _listing(request, search_products(query), SEARCH_SORTS)

    context = {
        "query": query,
        "listing": SimpleLazyObject(search_listing),
        "listing_key": listing_cache_key(request),
    }
    return render_catalog_page(request, "catalog/search.html", context)


@shared_page(no_parameters)
def product(request, slug):
    request_catalog_version(request)
    products = Product.objects.active().select_related("category").prefetch_related("images")
    product = SimpleLazyObject(lambda: get_object_or_404(products, slug=slug))
    return render_catalog_page(request, "catalog/product.html", {"slug": slug, "product": product})

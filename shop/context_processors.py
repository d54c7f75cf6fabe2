from functools import cache

from django.conf import settings
from django.urls import get_script_prefix, reverse

# The links of every page's header (but the brand's: error pages render without this), by name.
HEADER_URL_NAMES = {
    "search": "catalog:search",
    "cart": "cart:detail",
    "orders": "accounts:orders",
    "logout": "accounts:logout",
    "login": "accounts:login",
    "signup": "accounts:signup",
}


@cache
def header_urls(script_prefix: str) -> dict[str, str]:
    """Reversed once per process (and prefix): `{% url %}` costs ~0.1-0.3 ms a link, which the
    header's links cost every page (profiled in ops/bench/storefront.py)."""
    return {key: reverse(name) for key, name in HEADER_URL_NAMES.items()}


def shop(request):
    return {
        "shop_name": settings.SHOP_NAME,
        "currency": settings.SHOP_CURRENCY,
        "header_urls": header_urls(get_script_prefix()),
    }

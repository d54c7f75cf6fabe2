"""robots.txt: crawl the catalog, not the pages that are one shopper's own or staff-only."""

from django.http import HttpResponse
from django.urls import reverse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

# Carts, checkout and order pages, accounts, the admin.
DISALLOWED_PREFIXES = ("/cart/", "/orders/", "/accounts/", "/admin/")


@require_GET
@cache_control(public=True, max_age=86400)
def robots_txt(request):
    lines = ["User-agent: *", *(f"Disallow: {prefix}" for prefix in DISALLOWED_PREFIXES)]
    lines.append(f"Sitemap: {request.build_absolute_uri(reverse('sitemap'))}")
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain; charset=utf-8")

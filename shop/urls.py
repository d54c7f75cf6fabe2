from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.contrib.sitemaps.views import sitemap
from django.urls import include, path

from shop import health, robots
from shop.catalog.sitemaps import SITEMAPS

# An outage met outside a view answers 503, like one met inside (shop/outage.py).
handler500 = "shop.outage.server_error"

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("robots.txt", robots.robots_txt, name="robots_txt"),
    path("sitemap.xml", sitemap, {"sitemaps": SITEMAPS}, name="sitemap"),
    path("admin/", admin.site.urls),
    path("accounts/", include("shop.accounts.urls")),
    path("cart/", include("shop.cart.urls")),
    path("orders/", include("shop.orders.urls")),
    path("", include("shop.catalog.urls")),
]

if settings.DEBUG:
    # nginx serves /media/ in the stack; runserver needs this in development.
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)

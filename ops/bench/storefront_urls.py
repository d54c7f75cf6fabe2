"""The shop's URLs plus /bench/bare/: a view that returns a fixed string of BENCH_BARE_BYTES
characters through the same settings and middleware, the benchmark's baseline."""

import os

from django.http import HttpResponse
from django.urls import path

from shop.urls import handler500  # noqa: F401  (handler500 is used by Django)
from shop.urls import urlpatterns as shop_urlpatterns

BARE_BODY = "x" * int(os.environ.get("BENCH_BARE_BYTES", "10000"))


def bare(request):
    return HttpResponse(BARE_BODY)


urlpatterns = [path("bench/bare/", bare), *shop_urlpatterns]

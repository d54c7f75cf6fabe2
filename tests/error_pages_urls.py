"""The shop's URLs plus a view that fails, for the 500 page's tests."""

from django.urls import include, path

handler500 = "shop.outage.server_error"


def fail(request):
    raise RuntimeError("a bug in a view")


urlpatterns = [path("fail/", fail), path("", include("shop.urls"))]

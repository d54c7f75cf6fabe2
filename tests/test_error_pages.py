"""404 and 500 pages in the shop's style; the 500 page needs neither the database nor a request."""

import pytest
from django.template.loader import render_to_string
from django.test import Client, RequestFactory
from django.views import defaults


def test_an_unknown_address_gets_the_shops_404(client, category):
    response = client.get("/product/no-such-thing/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "Page not found" in html
    assert "/static/css/shop.css" in html
    assert 'href="/category/mugs/"' in html  # the categories navigation, as on every page
    assert '<label for="search-404">' in html


@pytest.mark.urls("tests.error_pages_urls")
def test_a_failing_view_gets_the_shops_500(db):
    response = Client(raise_request_exception=False).get("/fail/")
    assert response.status_code == 500
    html = response.content.decode()
    assert "Something went wrong" in html
    assert "/static/css/shop.css" in html
    assert "a bug in a view" not in html


def test_the_500_page_renders_without_database_context_processors_or_request():
    # No `db` fixture: any query here would fail the test.
    html = render_to_string("500.html")
    assert "<title>Something went wrong</title>" in html
    assert '<a class="brand" href="/">Home</a>' in html  # never an empty link
    response = defaults.server_error(RequestFactory().get("/"))
    assert response.status_code == 500
    assert "Something went wrong" in response.content.decode()

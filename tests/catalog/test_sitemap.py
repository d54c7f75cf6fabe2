"""sitemap.xml lists every category and visible product; robots.txt points at it."""

import xml.etree.ElementTree as ET

NS = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}


def parse(response):
    return ET.fromstring(response.content)  # noqa: S314  (our own page, in a test)


def locations(response):
    return [loc.text for loc in parse(response).findall("s:url/s:loc", NS)]


def test_the_sitemap_lists_categories_and_active_products(client, make_product, category):
    shown = make_product(name="Shown")
    hidden = make_product(name="Hidden", is_active=False)
    response = client.get("/sitemap.xml")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/xml")
    urls = locations(response)
    assert urls[0] == "http://testserver/"
    assert f"http://testserver/category/{category.slug}/" in urls
    assert f"http://testserver{shown.get_absolute_url()}" in urls
    assert f"http://testserver{hidden.get_absolute_url()}" not in urls
    lastmods = parse(response).findall("s:url/s:lastmod", NS)
    assert lastmods[0].text.startswith(str(shown.updated_at.date()))


def test_the_sitemap_costs_the_same_queries_for_many_products(
    client, make_product, django_assert_max_num_queries
):
    for _ in range(30):
        make_product()
    with django_assert_max_num_queries(4):  # categories, products, and their COUNTs
        client.get("/sitemap.xml")


def test_robots_txt_keeps_crawlers_out_of_carts_checkout_accounts_and_admin(client, db):
    response = client.get("/robots.txt", secure=True)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    lines = response.content.decode().splitlines()
    for prefix in ("/cart/", "/orders/", "/accounts/", "/admin/"):
        assert f"Disallow: {prefix}" in lines
    assert "Disallow: /" not in lines  # the catalog stays crawlable
    assert "Sitemap: https://testserver/sitemap.xml" in lines


def test_robots_txt_answers_only_get(client, db):
    assert client.post("/robots.txt").status_code == 405

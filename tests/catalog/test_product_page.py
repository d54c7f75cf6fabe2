"""The product page and the cards: gallery with responsive thumbnails, prices, breadcrumbs, stock."""

from html.parser import HTMLParser

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from shop.catalog.services import add_product_image, generate_thumbnails_for
from tests.conftest import png_bytes


class Tags(HTMLParser):
    """Every start tag of a page, as (name, attributes)."""

    def __init__(self, html):
        super().__init__()
        self.tags = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def all(self, name, **attrs):
        return [a for t, a in self.tags if t == name and all(a.get(k) == v for k, v in attrs.items())]


def images_of(client, url):
    html = client.get(url).content.decode()
    return Tags(html).all("img")


def add_image(product, width=1200, height=900, colour="red", thumbnails=True):
    image = add_product_image(product, SimpleUploadedFile("p.png", png_bytes(width, height, colour)))
    if thumbnails:
        generate_thumbnails_for(image.pk)
        image.refresh_from_db()
    return image


def srcset(*candidates):
    return ", ".join(f"/media/{name} {width}w" for name, width in candidates)


def test_the_gallery_shows_every_image_with_responsive_thumbnails(client, make_product):
    product = make_product(name="Blue Teapot")
    first = add_image(product, colour="red")
    second = add_image(product, 600, 900, colour="green")
    main, other = images_of(client, product.get_absolute_url())
    assert main["srcset"] == srcset(
        (first.thumbnail_small, 300), (first.thumbnail_large, 800), (first.image.name, 1200)
    )
    assert (main["width"], main["height"]) == ("1200", "900")
    assert "loading" not in main  # the first picture is what the shopper came for
    assert main["sizes"]
    assert main["alt"] == "Blue Teapot, picture 1 of 2"
    # Portrait: the thumbnails' longer side is the height.
    assert other["srcset"] == srcset(
        (second.thumbnail_small, 200), (second.thumbnail_large, 533), (second.image.name, 600)
    )
    assert (other["loading"], other["alt"], other["height"]) == ("lazy", "Blue Teapot, picture 2 of 2", "900")


def test_before_the_worker_ran_the_original_is_the_only_candidate(client, make_product):
    product = make_product(name="Mug")
    image = add_image(product, 400, 300, thumbnails=False)
    (img,) = images_of(client, product.get_absolute_url())
    assert img["srcset"] == f"/media/{image.image.name} 400w"
    assert img["src"] == f"/media/{image.image.name}"


def test_a_small_image_is_not_listed_twice_at_one_width(client, make_product):
    product = make_product(name="Mug")
    image = add_image(product, 250, 100)
    (img,) = images_of(client, product.get_absolute_url())
    assert img["srcset"] == f"/media/{image.thumbnail_small} 250w"


def test_cards_use_the_small_thumbnail_lazily_with_alt_text(client, make_product, category):
    product = make_product(name="Blue Teapot")
    image = add_image(product)
    (img,) = images_of(client, f"/category/{category.slug}/")
    assert img["src"] == f"/media/{image.thumbnail_small}"
    assert (img["loading"], img["alt"], img["width"], img["height"]) == ("lazy", "Blue Teapot", "1200", "900")
    assert "300w" in img["srcset"]
    assert img["sizes"]


def test_alt_text_given_in_the_admin_wins(client, make_product):
    product = make_product(name="Mug")
    image = add_image(product)
    image.alt_text = "A white mug on a wooden table"
    image.save()
    (img,) = images_of(client, product.get_absolute_url())
    assert img["alt"] == "A white mug on a wooden table"


def test_the_product_page_costs_the_same_queries_with_more_images(
    client, make_product, django_assert_max_num_queries
):
    product = make_product()
    add_image(product)
    for colour in ("green", "blue", "white"):
        add_image(product, colour=colour)
    with django_assert_max_num_queries(4):  # product + category, images, navigation (+ slack 1)
        assert client.get(product.get_absolute_url()).status_code == 200


def test_breadcrumbs_lead_home_through_the_category(client, make_product, category):
    product = make_product(name="Blue Teapot")
    tags = Tags(client.get(product.get_absolute_url()).content.decode())
    assert tags.all("nav", **{"aria-label": "Breadcrumb"})
    html = client.get(product.get_absolute_url()).content.decode()
    crumbs = html.split('aria-label="Breadcrumb"')[1].split("</nav>")[0]
    assert crumbs.index(">Home<") < crumbs.index(">Mugs<") < crumbs.index(">Blue Teapot<")
    assert tags.all("a", href=product.get_absolute_url(), **{"aria-current": "page"})
    category_html = client.get(f"/category/{category.slug}/").content.decode()
    assert f'<a href="/category/{category.slug}/" aria-current="page">Mugs</a>' in category_html


@pytest.mark.parametrize(
    ("stock", "label", "can_buy"),
    [(0, "Sold out", False), (1, "Only 1 left", True), (5, "Only 5 left", True), (6, "In stock", True)],
)
def test_stock_states(client, make_product, category, settings, stock, label, can_buy):
    settings.LOW_STOCK_THRESHOLD = 5
    product = make_product(name="Mug", stock=stock)
    html = client.get(product.get_absolute_url()).content.decode()
    assert label in html
    assert ("Add to cart" in html) is can_buy
    assert (f"/cart/add/{product.pk}/" in html) is can_buy
    card = client.get(f"/category/{category.slug}/").content.decode()
    assert (label in card) is (label != "In stock")


def test_prices_follow_the_shops_locale_and_currency(client, make_product, category, settings):
    product = make_product(price="1234.50")
    assert "€1,234.50" in client.get(product.get_absolute_url()).content.decode()
    settings.LANGUAGE_CODE, settings.SHOP_CURRENCY = "de-de", "EUR"
    assert "1.234,50\xa0€" in client.get(f"/category/{category.slug}/").content.decode()
    settings.LANGUAGE_CODE, settings.SHOP_CURRENCY = "en-us", "USD"
    assert "$1,234.50" in client.get("/search/", {"q": "product"}).content.decode()

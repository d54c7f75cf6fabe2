"""Typo-tolerant search (pg_trgm word similarity) and the indexes that serve it."""

import pytest
from django.db import connection, connections

from shop.catalog.models import Category
from shop.catalog.search import MAX_QUERY_LENGTH, TYPO_THRESHOLD, indexes_preferred, search_products


@pytest.fixture
def catalog(make_product, category):
    chairs = Category.objects.create(name="Chairs", slug="chairs")
    kitchen = Category.objects.create(name="Kitchen", slug="kitchen")
    make_product(name="Espresso Cup")  # in "Mugs"
    make_product(name="Blue Mug", category=kitchen)
    make_product(name="Oak Chair", category=chairs, description="Solid oak.")
    make_product(name="Teapot", category=kitchen, sku="TEA-POT-1")


def found(client, query):
    return sorted(p.name for p in client.get("/search/", {"q": query}).context["listing"].products)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("muggs", ["Blue Mug", "Espresso Cup"]),  # a typo; the cup is in the category "Mugs"
        ("mug", ["Blue Mug", "Espresso Cup"]),
        ("chairr", ["Oak Chair"]),
        ("oak", ["Oak Chair"]),
        ("solid", ["Oak Chair"]),  # the description, by full-text search
        ("tea-pot-1", ["Teapot"]),  # the SKU, any case
        ("bicycle", []),
    ],
)
def test_search_finds_despite_typos(client, catalog, query, expected):
    assert found(client, query) == expected


def test_closer_names_rank_first(client, catalog):
    products = client.get("/search/", {"q": "muggs"}).context["listing"].products
    assert [p.name for p in products] == ["Blue Mug", "Espresso Cup"]


def test_every_connection_gets_the_typo_threshold(db):
    fresh = connections.create_connection("default")
    try:
        with fresh.cursor() as cursor:
            cursor.execute("SHOW pg_trgm.word_similarity_threshold")
            assert float(cursor.fetchone()[0]) == TYPO_THRESHOLD != 0.6  # 0.6: PostgreSQL's default
    finally:
        fresh.close()


def test_the_search_uses_an_index_for_each_branch(catalog):
    with indexes_preferred():
        plan = search_products("muggs").explain()
    for index in ("product_search_document", "product_name_trgm", "product_sku_upper"):
        assert index in plan, plan
    assert "BitmapOr" in plan
    assert "Seq Scan" not in plan


def seqscan_setting():
    with connection.cursor() as cursor:
        cursor.execute("SHOW enable_seqscan")
        return cursor.fetchone()[0]


def test_preferring_indexes_ends_with_the_search(catalog):
    with indexes_preferred():
        assert seqscan_setting() == "off"
    assert seqscan_setting() == "on"
    with pytest.raises(ZeroDivisionError), indexes_preferred():
        1 / 0  # noqa: B018
    assert seqscan_setting() == "on"


def test_search_costs_two_queries(catalog, django_assert_num_queries):
    with django_assert_num_queries(2):  # matching categories, then the products
        assert len(list(search_products("muggs"))) == 2


def test_an_empty_or_overlong_query_is_not_an_error(client, catalog):
    assert "Type a word" in client.get("/search/", {"q": "   "}).content.decode()
    response = client.get("/search/", {"q": "mug " * 500})
    assert response.status_code == 200
    assert len(response.context["query"]) == MAX_QUERY_LENGTH


def test_the_search_document_follows_edits(client, catalog):
    from shop.catalog.models import Product

    product = Product.objects.get(name="Oak Chair")
    product.description = "Made of walnut."
    product.save()
    assert found(client, "walnut") == ["Oak Chair"]
    assert found(client, "solid") == []


@pytest.mark.parametrize("query", ["'", "&|!():*", "日本茶", "a", "%_\\", '"unclosed', "-mug", "mug or"])
def test_any_text_is_a_query_not_an_error(client, catalog, query):
    response = client.get("/search/", {"q": query})
    assert response.status_code == 200
    assert response.context["query"] == query

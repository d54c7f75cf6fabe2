"""Product search: full-text matches first, then names (or categories) that are close to a typo.

Two queries: the categories whose name is close to the query, then the products, found and
ranked in one query whose every OR branch has an index (migration 0004), so PostgreSQL can
combine them (BitmapOr) instead of reading every product: a GIN index on the stored text-search
document, GIN trigram indexes on the product and category names, one on UPPER(sku), and the
foreign key's on the category. The trigram branches use the `%>` operator
(word similarity above `pg_trgm.word_similarity_threshold`), which those indexes serve; the
threshold is set once per connection (`use_typo_threshold`), since PostgreSQL's default of 0.6
misses a doubled or dropped letter in a short word ("muggs" -> "mug" scores 0.5).
"""

from contextlib import contextmanager

from django.contrib.postgres.search import SearchQuery, SearchRank, TrigramWordSimilarity
from django.db import connection, transaction
from django.db.models import F, Q

from shop.catalog.models import SEARCH_CONFIG, Category, Product

# How close a word must be to one in a product or category name (0..1) to count as a match.
TYPO_THRESHOLD = 0.4
# Longest query looked at; longer input is cut, not refused.
MAX_QUERY_LENGTH = 200


def clean_query(raw: str | None) -> str:
    return (raw or "").strip()[:MAX_QUERY_LENGTH]


def search_products(query: str):
    """Active products matching `query`, best first (a queryset: the caller may re-order it).

    Products in a category whose name is close to the query match too ("muggs" finds the
    espresso cup in Mugs); those categories are looked up first, in a query of their own, so
    that every branch of the products' WHERE clause has an index (see the module docstring).
    """
    search_query = SearchQuery(query, search_type="websearch", config=SEARCH_CONFIG)
    category_ids = list(
        Category.objects.filter(name__trigram_word_similar=query).values_list("pk", flat=True)
    )
    return (
        Product.objects.active()
        .filter(
            Q(search_document=search_query)
            | Q(name__trigram_word_similar=query)
            | Q(sku__iexact=query)
            | Q(category_id__in=category_ids)
        )
        .annotate(
            rank=SearchRank(F("search_document"), search_query),
            similarity=TrigramWordSimilarity(query, "name"),
        )
        .order_by("-rank", "-similarity", "name", "pk")
    )


@contextmanager
def indexes_preferred():
    """Run the search's queries in a transaction that tells the planner to use the indexes.

    PostgreSQL prices `%>` like a cheap comparison, so on a catalog of a few thousand rows it
    reads the whole table and computes the similarity for every product (15 ms for 1000, on
    a busy machine) where the indexes answer in under 1 ms. The setting is transaction-local
    and put back on the way out, also inside an outer transaction; after an error, the
    rollback of this (sub)transaction undoes it.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('enable_seqscan'), set_config('enable_seqscan', 'off', true)")
        previous = cursor.fetchone()[0]
        yield
        cursor.execute("SELECT set_config('enable_seqscan', %s, true)", [previous])


def use_typo_threshold(sender, connection, **kwargs) -> None:
    """connection_created: let `%>` accept the typos TYPO_THRESHOLD allows, on every connection.

    Setting a placeholder of an extension's variable is allowed before the extension is loaded
    in the session, and costs one statement per new connection (they persist: CONN_MAX_AGE).
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('pg_trgm.word_similarity_threshold', %s, false)", [str(TYPO_THRESHOLD)]
        )

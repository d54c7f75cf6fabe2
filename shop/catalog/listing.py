"""Product listings (a category, search results): the sort orders shoppers may pick, and pages.

Plain functions over querysets, so a view stays thin and a cache can wrap the result. A page
costs the same number of queries whatever its number or sort: a COUNT, the page's products
with their categories (one join), and their images (one prefetch).
"""

from dataclasses import dataclass

from django.conf import settings
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet


@dataclass(frozen=True)
class SortOption:
    key: str
    label: str
    ordering: tuple[str, ...]


# The whitelist: a sort key from the URL is looked up here, never passed to order_by().
# Every ordering ends in the primary key, so pages never overlap or skip a product.
NAME = SortOption("name", "Name", ("name", "pk"))
RELEVANCE = SortOption("relevance", "Best match", ())  # the search's own ranking
PRICE_ASCENDING = SortOption("price", "Price: low to high", ("price", "name", "pk"))
PRICE_DESCENDING = SortOption("-price", "Price: high to low", ("-price", "name", "pk"))
NEWEST = SortOption("newest", "Newest", ("-created_at", "-pk"))

CATEGORY_SORTS = (NAME, PRICE_ASCENDING, PRICE_DESCENDING, NEWEST)
SEARCH_SORTS = (RELEVANCE, PRICE_ASCENDING, PRICE_DESCENDING, NEWEST)


@dataclass(frozen=True)
class Listing:
    page: Page
    sort: SortOption
    sort_options: tuple[SortOption, ...]

    @property
    def products(self):
        return self.page.object_list

    def page_links(self):
        """Page numbers around the current one, with Paginator.ELLIPSIS for the gaps."""
        return self.page.paginator.get_elided_page_range(self.page.number, on_each_side=2, on_ends=1)


def choose_sort(key: str | None, options: tuple[SortOption, ...]) -> SortOption:
    """The option named `key`, or the first (the default) for a missing or unknown key."""
    return next((option for option in options if option.key == key), options[0])


def listing_page(
    queryset: QuerySet, *, page_number, sort_key: str | None, sort_options: tuple[SortOption, ...]
) -> Listing:
    """One page of `queryset` in the chosen order; a bad page number gives the nearest page."""
    sort = choose_sort(sort_key, sort_options)
    products = queryset.select_related("category").prefetch_related("images")
    if sort.ordering:
        products = products.order_by(*sort.ordering)
    page = Paginator(products, settings.PRODUCTS_PER_PAGE).get_page(page_number)
    # Run the queries here, not later in the template: the caller may hold a transaction
    # setting (search.indexes_preferred) or cache the result.
    page.object_list = list(page.object_list)
    return Listing(page=page, sort=sort, sort_options=sort_options)

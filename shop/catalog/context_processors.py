from shop.catalog.models import Category


def categories(request):
    # A lazy queryset: only pages that show the navigation run the query.
    return {"nav_categories": Category.objects.all()}

from django.apps import AppConfig
from django.db.backends.signals import connection_created


class CatalogConfig(AppConfig):
    name = "shop.catalog"
    label = "catalog"

    def ready(self):
        from shop.catalog import signals  # noqa: F401  (connects the file clean-up handlers)
        from shop.catalog.search import use_typo_threshold

        connection_created.connect(use_typo_threshold, dispatch_uid="catalog.use_typo_threshold")

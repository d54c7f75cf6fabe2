from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "shop.orders"
    label = "orders"

    def ready(self):
        from shop.orders import guest_orders  # noqa: F401  (connects the sign-in receiver)

from django import template

from shop.money import format_price

register = template.Library()


@register.filter
def money(amount, currency=None):
    """{{ product.price|money }} in the shop's currency, {{ order.total|money:order.currency }}."""
    return format_price(amount, currency)

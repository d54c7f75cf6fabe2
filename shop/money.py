"""Amounts of money as shoppers read them: the shop's locale (LANGUAGE_CODE) and currency
(SHOP_CURRENCY), formatted by Babel from the Unicode CLDR data ("€1,234.50" for en-us,
"1.234,50 €" for de-de)."""

from decimal import Decimal
from functools import lru_cache

from babel import Locale
from babel.numbers import format_currency
from django.conf import settings
from django.utils.translation import to_locale


@lru_cache(maxsize=8)
def babel_locale(language_code: str) -> Locale:
    return Locale.parse(to_locale(language_code))


def format_price(amount: Decimal | int | str | None, currency: str | None = None) -> str:
    """`amount` in `currency` (default: the shop's) for the shop's locale; "" for no amount."""
    if amount is None or amount == "":
        return ""
    return _formatted(Decimal(amount), currency or settings.SHOP_CURRENCY, settings.LANGUAGE_CODE)


# Babel takes ~40 µs a price (pattern and locale data lookups): a page of 12 cards would
# spend half a millisecond on it. A shop has few distinct prices, so remember them.
@lru_cache(maxsize=4096)
def _formatted(amount: Decimal, currency: str, language_code: str) -> str:
    return format_currency(amount, currency, locale=babel_locale(language_code))

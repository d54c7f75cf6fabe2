from decimal import Decimal

import pytest

from shop.money import format_price


@pytest.mark.parametrize(
    ("language", "currency", "amount", "expected"),
    [
        ("en-us", "EUR", "12.5", "€12.50"),
        ("en-us", "USD", "1234.5", "$1,234.50"),
        ("de-de", "EUR", "1234.5", "1.234,50\xa0€"),
        ("fr-fr", "EUR", "0", "0,00\xa0€"),
        ("en-us", "JPY", "1234", "¥1,234"),
    ],
)
def test_format_price(settings, language, currency, amount, expected):
    settings.LANGUAGE_CODE = language
    assert format_price(Decimal(amount), currency) == expected


def test_format_price_defaults_to_the_shops_currency(settings):
    settings.LANGUAGE_CODE, settings.SHOP_CURRENCY = "en-gb", "GBP"
    assert format_price(Decimal("3")) == "£3.00"


def test_no_amount_is_an_empty_string():
    assert format_price(None) == ""


def test_an_unknown_currency_code_is_shown_as_given(settings):
    settings.LANGUAGE_CODE = "en-us"
    assert format_price(Decimal("1"), "XYZ") == "XYZ1.00"

"""Payment providers. The shop takes no card payments: both providers here are settled
outside the shop, and a staff member marks the order paid (admin action) when the money is in.

A provider for a real gateway would implement the same interface and call
`services.change_status(order, OrderStatus.PAID, ...)` from its confirmed-payment webhook.
"""

from dataclasses import dataclass

from django.conf import settings

from shop.money import format_price


@dataclass(frozen=True)
class PaymentProvider:
    code: str
    label: str

    def instructions(self, order) -> str:
        raise NotImplementedError


class BankTransfer(PaymentProvider):
    def instructions(self, order) -> str:
        account = settings.SHOP_BANK_ACCOUNT or "the account shown on our invoice"
        return (
            f"Please transfer {format_price(order.total, order.currency)} to {account}, "
            f"quoting your order number {order.number}. We ship once the payment has arrived."
        )


class CashOnDelivery(PaymentProvider):
    def instructions(self, order) -> str:
        return f"Please have {format_price(order.total, order.currency)} ready when your parcel arrives."


PROVIDERS = {
    provider.code: provider
    for provider in (
        BankTransfer("bank_transfer", "Bank transfer"),
        CashOnDelivery("cash_on_delivery", "Cash on delivery"),
    )
}


def get_provider(code: str) -> PaymentProvider:
    try:
        return PROVIDERS[code]
    except KeyError:
        raise ValueError(f"Unknown payment method {code!r}; choose one of {', '.join(PROVIDERS)}.") from None


def choices() -> list[tuple[str, str]]:
    return [(provider.code, provider.label) for provider in PROVIDERS.values()]

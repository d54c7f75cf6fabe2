"""The orders a browser session placed as a guest: who may see them, and who may claim them.

A guest's order has no user. When the same browser then signs up or signs in, the orders it
placed under the account's e-mail address become the account's, so "My orders" shows them.
Only orders placed in this session: an e-mail address alone proves nothing (sign-up does not
verify it), and claiming by address would show a stranger's name and address to whoever signs
up with it.
"""

from collections.abc import Iterable

from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver

from shop.orders.models import Order

SESSION_KEY = "placed_orders"
REMEMBERED = 20  # the newest orders a session remembers


def remember(session, order: Order) -> None:
    placed = session.get(SESSION_KEY, [])
    if order.number not in placed:
        session[SESSION_KEY] = [*placed, order.number][-REMEMBERED:]


def placed_in(session) -> list[str]:
    return session.get(SESSION_KEY, [])


def claim(user, order_numbers: Iterable[str]) -> int:
    """Give `user` those of the guest orders `order_numbers` placed under the user's e-mail
    address; return how many."""
    if not user.email:
        return 0
    guest_orders = Order.objects.filter(number__in=list(order_numbers), user__isnull=True)
    return guest_orders.filter(email__iexact=user.email).update(user=user)


@receiver(user_logged_in, dispatch_uid="orders.claim_guest_orders")
def claim_on_sign_in(sender, request, user, **kwargs):
    """Sign-up signs the new customer in too, so this covers both."""
    if request is not None:
        claim(user, placed_in(request.session))

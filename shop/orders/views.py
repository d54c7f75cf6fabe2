from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render

from shop.cart.cart import Cart
from shop.orders import guest_orders, payments
from shop.orders.forms import CheckoutForm
from shop.orders.models import Order
from shop.orders.services import CheckoutError, place_order


def checkout(request):
    cart = Cart(request.session)
    if request.method == "POST":
        form = CheckoutForm(request.POST)
        if form.is_valid():
            try:
                order = place_order(
                    cart.quantities(),
                    form.customer(),
                    form.cleaned_data["payment_method"],
                    form.cleaned_data["idempotency_key"],
                    user=request.user,
                    scope=_checkout_scope(request),
                )
            except CheckoutError as error:
                messages.error(request, str(error))
            else:
                cart.clear()
                guest_orders.remember(request.session, order)
                return redirect(order)
    else:
        if not cart:
            messages.info(request, "Your cart is empty.")
            return redirect("cart:detail")
        form = CheckoutForm(initial=_initial_for(request.user))
    return render(
        request, "orders/checkout.html", {"form": form, "lines": cart.lines(), "total": cart.total()}
    )


def _checkout_scope(request) -> str:
    """Who is checking out: a replayed form key counts only for the same customer or session."""
    if request.user.is_authenticated:
        return f"user:{request.user.pk}"
    if request.session.session_key is None:
        request.session.save()
    return f"session:{request.session.session_key}"


def _initial_for(user) -> dict:
    initial = {"idempotency_key": CheckoutForm.new_key(), "payment_method": "bank_transfer"}
    if user.is_authenticated:
        initial.update(email=user.email, full_name=user.get_full_name())
        last = user.orders.first()
        if last:
            for field in ("address_line1", "address_line2", "postal_code", "city", "country", "phone"):
                initial[field] = getattr(last, field)
    return initial


def detail(request, number):
    order = get_object_or_404(Order.objects.prefetch_related("lines", "events"), number=number)
    if not _may_see(request, order):
        raise Http404("No such order.")
    provider = payments.get_provider(order.payment_method)
    return render(
        request, "orders/detail.html", {"order": order, "payment_instructions": provider.instructions(order)}
    )


def _may_see(request, order: Order) -> bool:
    user = request.user
    if user.is_authenticated and (user.is_staff or order.user_id == user.pk):
        return True
    return order.number in guest_orders.placed_in(request.session)

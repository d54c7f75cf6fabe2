from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from shop.cart.cart import Cart
from shop.cart.forms import QuantityForm
from shop.catalog.models import Product


def detail(request):
    cart = Cart(request.session)
    return render(request, "cart/detail.html", {"lines": cart.lines(), "total": cart.total()})


@require_POST
def add(request, product_id):
    product = get_object_or_404(Product.objects.active(), pk=product_id)
    form = QuantityForm(request.POST)
    if form.is_valid() and form.cleaned_data["quantity"] > 0:
        Cart(request.session).add(product, form.cleaned_data["quantity"])
        messages.success(request, f"{product.name} was added to your cart.")
    else:
        messages.error(request, "Choose a quantity between 1 and 99.")
    return redirect("cart:detail")


@require_POST
def update(request, product_id):
    product = get_object_or_404(Product, pk=product_id)
    form = QuantityForm(request.POST)
    if form.is_valid():
        Cart(request.session).set(product, form.cleaned_data["quantity"])
    else:
        messages.error(request, "Choose a quantity between 0 and 99.")
    return redirect("cart:detail")

from shop.cart.cart import Cart


def cart_summary(request):
    if not hasattr(request, "session"):
        return {}
    return {"cart_count": Cart(request.session).count()}

from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render

from shop.accounts.forms import SignupForm


def signup(request):
    if request.method == "POST":
        form = SignupForm(request.POST)
        if form.is_valid():
            user = form.save()
            # Just created with this password: no need to ask the backends (axes comes first).
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("accounts:orders")
    else:
        form = SignupForm()
    return render(request, "accounts/signup.html", {"form": form})


@login_required
def orders(request):
    return render(request, "accounts/orders.html", {"orders": request.user.orders.all()})

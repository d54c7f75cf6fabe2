from django.contrib.auth import views as auth_views
from django.urls import path

from shop.accounts import views
from shop.accounts.forms import SignInForm

app_name = "accounts"
urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="accounts/login.html", authentication_form=SignInForm),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("orders/", views.orders, name="orders"),
]

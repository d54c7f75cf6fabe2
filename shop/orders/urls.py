from django.urls import path

from shop.orders import views

app_name = "orders"
urlpatterns = [
    path("checkout/", views.checkout, name="checkout"),
    path("<str:number>/", views.detail, name="detail"),
]

from django.urls import path

from shop.catalog import views

app_name = "catalog"
urlpatterns = [
    path("", views.home, name="home"),
    path("search/", views.search, name="search"),
    path("category/<slug:slug>/", views.category, name="category"),
    path("product/<slug:slug>/", views.product, name="product"),
]

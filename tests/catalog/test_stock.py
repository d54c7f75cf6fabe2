"""Stock changes by deltas under a row lock, each one recorded; the admin cannot overwrite it."""

import threading
import uuid

import pytest
from django.db import connections

from shop.catalog.models import Product, StockMovement
from shop.catalog.stock import InsufficientStock, StockError, adjust_stock
from shop.orders.models import OrderStatus
from shop.orders.services import change_status, place_order
from tests.conftest import CUSTOMER


def change_form_post_data(response) -> dict:
    """What a browser posts back from an admin change form, as it was rendered."""
    data = {}
    form = response.context["adminform"].form
    for name in form.fields:
        value = form[name].value()
        if value is not None:
            data[name] = "on" if value is True else ("" if value is False else value)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        for key, value in formset.management_form.initial.items():
            data[f"{formset.prefix}-{key}"] = value
        for inline_form in formset.initial_forms:
            for name in inline_form.fields:
                value = inline_form[name].value()
                if value is not None and not hasattr(value, "url"):
                    data[inline_form.add_prefix(name)] = value
        data[f"{formset.prefix}-TOTAL_FORMS"] = len(formset.initial_forms)
    return {key: value for key, value in data.items() if value is not False}


@pytest.mark.django_db
def test_admin_form_saved_after_a_purchase_keeps_the_purchase(admin_client, make_product):
    product = make_product(stock=10)
    page = admin_client.get(f"/admin/catalog/product/{product.pk}/change/")
    assert page.status_code == 200
    data = change_form_post_data(page)
    data["price"] = "15.00"  # the staff member's actual change

    place_order({product.pk: 3}, CUSTOMER, "bank_transfer", uuid.uuid4().hex)  # meanwhile
    response = admin_client.post(f"/admin/catalog/product/{product.pk}/change/", data)

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    product.refresh_from_db()
    assert str(product.price) == "15.00"
    assert product.stock == 7  # not the 10 shown when the form was loaded


@pytest.mark.django_db
def test_admin_list_cannot_edit_stock(admin_client, make_product):
    make_product(stock=10)
    page = admin_client.get("/admin/catalog/product/")
    assert "form-0-stock" not in page.content.decode()
    assert "form-0-price" in page.content.decode()


@pytest.mark.django_db
def test_admin_adjustment_records_a_movement_with_the_user(admin_client, admin_user, make_product):
    product = make_product(stock=10)
    url = f"/admin/catalog/product/{product.pk}/adjust-stock/"
    assert admin_client.get(url).status_code == 200

    response = admin_client.post(url, {"delta": "-4", "reason": "Breakage in the warehouse"})

    assert response.status_code == 302
    product.refresh_from_db()
    assert product.stock == 6
    movement = StockMovement.objects.get(product=product)
    assert (movement.delta, movement.stock_after, movement.kind, movement.reason, movement.user) == (
        -4,
        6,
        StockMovement.Kind.ADJUSTMENT,
        "Breakage in the warehouse",
        admin_user,
    )
    change_page = admin_client.get(f"/admin/catalog/product/{product.pk}/change/").content.decode()
    assert "Breakage in the warehouse" in change_page  # the movements, shown on the product
    assert 'name="stock"' not in change_page  # shown, not editable


@pytest.mark.django_db
def test_admin_adjustment_below_zero_is_refused_with_a_clear_error(admin_client, make_product):
    product = make_product(stock=2)

    response = admin_client.post(
        f"/admin/catalog/product/{product.pk}/adjust-stock/", {"delta": "-5", "reason": "Count"}
    )

    assert response.status_code == 200
    assert f"Cannot remove 5 of {product.name}: only 2 in stock." in response.content.decode()
    product.refresh_from_db()
    assert product.stock == 2
    assert not StockMovement.objects.exists()


@pytest.mark.django_db
def test_new_product_initial_stock_is_recorded(admin_client, category, admin_user):
    response = admin_client.post(
        "/admin/catalog/product/add/",
        {
            "category": category.pk,
            "name": "New mug",
            "slug": "new-mug",
            "sku": "NEW-1",
            "price": "5.00",
            "stock": "12",
            "is_active": "on",
            "images-TOTAL_FORMS": "0",
            "images-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302
    product = Product.objects.get(sku="NEW-1")
    assert product.stock == 12
    assert StockMovement.objects.get(product=product).kind == StockMovement.Kind.INITIAL


@pytest.mark.django_db
def test_saving_a_product_never_writes_its_stock(make_product):
    product = make_product(stock=10)
    stale = Product.objects.get(pk=product.pk)
    adjust_stock(product, -3, "sold elsewhere")

    stale.name = "Renamed"
    stale.save()

    assert Product.objects.get(pk=product.pk).stock == 7
    stale.stock = 100
    with pytest.raises(ValueError, match="adjust_stock"):
        stale.save()


@pytest.mark.django_db
def test_checkout_and_cancellation_record_their_movements(make_product, admin_user):
    product = make_product(stock=10)
    order = place_order({product.pk: 3}, CUSTOMER, "bank_transfer", uuid.uuid4().hex)
    change_status(order, OrderStatus.CANCELLED, actor=admin_user)

    movements = list(StockMovement.objects.filter(product=product).order_by("id"))
    assert [(m.delta, m.stock_after, m.kind, m.order_id) for m in movements] == [
        (-3, 7, StockMovement.Kind.ORDER, order.pk),
        (3, 10, StockMovement.Kind.CANCELLATION, order.pk),
    ]
    assert movements[1].user == admin_user


@pytest.mark.django_db
def test_adjust_stock_refuses_nothing_and_no_reason(make_product):
    product = make_product(stock=1)
    with pytest.raises(StockError):
        adjust_stock(product, 0, "nothing")
    with pytest.raises(StockError):
        adjust_stock(product, 1, "  ")


@pytest.mark.django_db(transaction=True)
def test_concurrent_removals_never_go_below_zero(make_product):
    product = make_product(stock=5)
    barrier = threading.Barrier(10)
    results = [None] * 10

    def remove_one(index):
        try:
            barrier.wait()
            results[index] = adjust_stock(product, -1, f"removal {index}")
        except Exception as error:  # collected and asserted on
            results[index] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=remove_one, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sum(isinstance(r, StockMovement) for r in results) == 5, results
    assert sum(isinstance(r, InsufficientStock) for r in results) == 5, results
    assert Product.objects.get(pk=product.pk).stock == 0
    assert sorted(StockMovement.objects.values_list("stock_after", flat=True)) == [0, 1, 2, 3, 4]

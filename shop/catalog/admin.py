from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from shop.catalog.forms import ProductImageForm, StockAdjustmentForm
from shop.catalog.models import Category, Product, ProductImage, StockMovement
from shop.catalog.stock import StockError, adjust_stock


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "position"]
    list_editable = ["position"]
    prepopulated_fields = {"slug": ["name"]}
    search_fields = ["name"]


class ProductImageInline(admin.TabularInline):
    model = ProductImage
    form = ProductImageForm
    extra = 1
    fields = ["preview", "image", "alt_text", "position", "width", "height"]
    readonly_fields = ["preview", "width", "height"]

    @admin.display(description="Preview")
    def preview(self, obj):
        if not obj.pk or not obj.image:
            return "-"
        return format_html('<img src="{}" alt="{}" height="80">', obj.small_url, obj.alt_text)


class StockMovementInline(admin.TabularInline):
    """The stock's history: shown, never edited (a correction is a new adjustment)."""

    model = StockMovement
    fk_name = "product"
    extra = 0
    can_delete = False
    fields = readonly_fields = ["created_at", "delta", "stock_after", "kind", "reason", "order", "user"]
    verbose_name_plural = "stock movements"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["name", "sku", "category", "price", "stock", "is_active", "updated_at"]
    list_filter = ["is_active", "category"]
    # Not stock: a list (or form) loaded before a purchase and saved after it would undo it.
    list_editable = ["price", "is_active"]
    search_fields = ["name", "sku", "description"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [ProductImageInline, StockMovementInline]

    def get_inline_instances(self, request, obj=None):
        inlines = super().get_inline_instances(request, obj)
        # A product being added has no history yet.
        if obj is None:
            inlines = [inline for inline in inlines if not isinstance(inline, StockMovementInline)]
        return inlines

    def get_readonly_fields(self, request, obj=None):
        # A new product gets its initial stock from the form; after that, only adjustments.
        return ["stock_with_adjust_link"] if obj is not None else []

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if obj is not None:
            fields = [name for name in fields if name != "stock"]
            fields.insert(fields.index("is_active"), "stock_with_adjust_link")
        return fields

    @admin.display(description="Stock")
    def stock_with_adjust_link(self, obj):
        url = reverse("admin:catalog_product_adjust_stock", args=[obj.pk])
        return format_html('{} &nbsp; <a class="button" href="{}">Adjust stock</a>', obj.stock, url)

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        initial = obj.stock
        obj.stock = 0
        super().save_model(request, obj, form, change)
        if initial:
            adjust_stock(obj, initial, "Initial stock", request.user, kind=StockMovement.Kind.INITIAL)

    def get_urls(self):
        adjust = path(
            "<path:object_id>/adjust-stock/",
            self.admin_site.admin_view(self.adjust_stock_view),
            name="catalog_product_adjust_stock",
        )
        return [adjust, *super().get_urls()]

    def adjust_stock_view(self, request, object_id):
        product = get_object_or_404(Product, pk=object_id)
        if not self.has_change_permission(request, product):
            raise PermissionDenied
        form = StockAdjustmentForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                movement = adjust_stock(
                    product, form.cleaned_data["delta"], form.cleaned_data["reason"], request.user
                )
            except StockError as error:
                form.add_error(None, str(error))
            else:
                self.log_change(request, product, f"Stock {movement.delta:+d}: {movement.reason}")
                self.message_user(
                    request,
                    f"Stock of {product} {movement.delta:+d}, now {movement.stock_after}.",
                    messages.SUCCESS,
                )
                return redirect("admin:catalog_product_change", product.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "product": product,
            "form": form,
            "title": f"Adjust the stock of {product}",
        }
        return TemplateResponse(request, "admin/catalog/product/adjust_stock.html", context)

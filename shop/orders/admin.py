from django.contrib import admin, messages

from shop.orders.models import Order, OrderEvent, OrderLine, OrderStatus
from shop.orders.services import InvalidTransition, change_status


class ReadOnlyInline(admin.TabularInline):
    """Lines and events are history: shown, never edited in the admin."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class OrderLineInline(ReadOnlyInline):
    model = OrderLine
    fields = readonly_fields = ["product_name", "sku", "unit_price", "quantity", "line_total"]


class OrderEventInline(ReadOnlyInline):
    model = OrderEvent
    fields = readonly_fields = ["created_at", "from_status", "to_status", "actor", "note"]


def _status_action(target: OrderStatus):
    def action(modeladmin, request, queryset):
        changed = 0
        for order in queryset:
            try:
                change_status(order, target, actor=request.user, note="Changed in the admin")
                changed += 1
            except InvalidTransition as error:
                modeladmin.message_user(request, str(error), messages.WARNING)
        if changed:
            modeladmin.message_user(request, f"{changed} order(s) marked {target.label.lower()}.")

    action.__name__ = f"mark_{target.value}"
    action.short_description = f"Mark selected orders {target.label.lower()}"
    return action


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["number", "created_at", "full_name", "email", "status", "payment_method", "total"]
    list_filter = ["status", "payment_method", "created_at"]
    search_fields = ["number", "email", "full_name"]
    date_hierarchy = "created_at"
    inlines = [OrderLineInline, OrderEventInline]
    actions = [
        _status_action(status)
        for status in (OrderStatus.PAID, OrderStatus.SHIPPED, OrderStatus.DELIVERED, OrderStatus.CANCELLED)
    ]
    # Status moves only through the actions above, so every change is checked and logged.
    readonly_fields = [
        "number",
        "status",
        "user",
        "payment_method",
        "currency",
        "subtotal",
        "shipping_cost",
        "total",
        "created_at",
        "updated_at",
    ]

    def has_delete_permission(self, request, obj=None):
        return False

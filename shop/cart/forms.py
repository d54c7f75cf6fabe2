from django import forms

from shop.cart.cart import MAX_QUANTITY_PER_LINE


class QuantityForm(forms.Form):
    quantity = forms.IntegerField(min_value=0, max_value=MAX_QUANTITY_PER_LINE, initial=1)

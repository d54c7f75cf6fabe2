import uuid

from django import forms

from shop.orders import payments
from shop.orders.services import CustomerDetails


class CheckoutForm(forms.Form):
    email = forms.EmailField()
    full_name = forms.CharField(max_length=200)
    address_line1 = forms.CharField(label="Address", max_length=200)
    address_line2 = forms.CharField(label="Address (line 2)", max_length=200, required=False)
    postal_code = forms.CharField(max_length=20)
    city = forms.CharField(max_length=100)
    country = forms.CharField(max_length=100)
    phone = forms.CharField(max_length=40, required=False)
    payment_method = forms.ChoiceField(choices=payments.choices, widget=forms.RadioSelect)
    # One key per rendered form: a double click or a replayed POST carries the same key.
    idempotency_key = forms.RegexField(regex=r"^[0-9a-f]{32}$", widget=forms.HiddenInput)

    @staticmethod
    def new_key() -> str:
        return uuid.uuid4().hex

    def customer(self) -> CustomerDetails:
        fields = CustomerDetails.__dataclass_fields__
        return CustomerDetails(**{name: self.cleaned_data[name] for name in fields})

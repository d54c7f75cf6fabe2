from django import forms
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm

from shop.accounts.models import User


class SignupForm(UserCreationForm):
    email = forms.EmailField(required=True)

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email", "first_name", "last_name")

    def clean_email(self):
        email = self.cleaned_data["email"]
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("An account with this email address exists already.")
        return email


class SignInForm(AuthenticationForm):
    """Django's sign-in form, whose "wrong username or password" belongs to no one field: here it
    marks both fields invalid and describes them (aria-describedby), so that a screen reader
    reads it with either field. The template gives the error list this id."""

    error_id = "sign-in-error"

    def clean(self):
        try:
            return super().clean()
        except forms.ValidationError:
            for name in ("username", "password"):
                self.fields[name].widget.attrs.update(
                    {"aria-invalid": "true", "aria-describedby": self.error_id}
                )
            raise

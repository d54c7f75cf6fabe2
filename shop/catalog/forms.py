from django import forms
from django.core.files.uploadedfile import UploadedFile

from shop.catalog.images import normalize_image
from shop.catalog.models import ProductImage


class ProductImageForm(forms.ModelForm):
    # A plain FileField: the checks in normalize_image replace Django's ImageField ones and
    # give the uploader a precise reason.
    image = forms.FileField(
        widget=forms.ClearableFileInput(attrs={"accept": "image/jpeg,image/png,image/webp"}),
        help_text="JPEG, PNG or WebP, at most 10 MB. Metadata is removed.",
    )

    class Meta:
        model = ProductImage
        fields = ["image", "alt_text", "position"]

    def clean_image(self):
        upload = self.cleaned_data["image"]
        if isinstance(upload, UploadedFile):
            self.normalized = normalize_image(upload)
            return self.normalized.as_content_file()
        return upload

    def save(self, commit=True):
        normalized = getattr(self, "normalized", None)
        if normalized is not None:
            self.instance.width, self.instance.height = normalized.width, normalized.height
        return super().save(commit)


class StockAdjustmentForm(forms.Form):
    delta = forms.IntegerField(
        label="Quantity",
        help_text="Added to the stock; negative to remove (breakage, a count that found fewer).",
    )
    reason = forms.CharField(max_length=200, help_text="A delivery, a stock count, breakage...")

    def clean_delta(self):
        delta = self.cleaned_data["delta"]
        if delta == 0:
            raise forms.ValidationError("Enter a quantity other than 0.")
        return delta

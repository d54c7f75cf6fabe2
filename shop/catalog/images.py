"""Validation and normalisation of uploaded product images, and their thumbnails.

An upload is trusted only after it has been decoded by Pillow as one of a few raster formats
and re-encoded from its pixels: whatever else the file carried (EXIF, text chunks, a script
after the image data) is gone. Nothing here writes to MEDIA_ROOT; storing is the caller's job.

Pillow is imported by the functions that use it: the catalog's models, signals and admin import
this module in every process (~15 ms of each start-up), and only uploads and thumbnails need it.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile

if TYPE_CHECKING:
    from PIL import Image

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
THUMBNAIL_SIZES = {"small": 300, "large": 800}


@dataclass(frozen=True)
class NormalizedImage:
    data: bytes
    format: str
    width: int
    height: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def storage_name(self) -> str:
        digest = self.sha256
        return f"products/{digest[:2]}/{digest}.{EXTENSIONS[self.format]}"

    def as_content_file(self) -> ContentFile:
        return ContentFile(self.data, name=self.storage_name)


def reject(message: str) -> ValidationError:
    return ValidationError(message, code="invalid_image")


def normalize_image(upload) -> NormalizedImage:
    """Check an uploaded file and return it re-encoded, or raise ValidationError."""
    max_bytes = settings.MAX_UPLOAD_BYTES
    if upload.size > max_bytes:
        raise reject(
            f"The file is {upload.size / 1_048_576:.1f} MB; images may be at most "
            f"{max_bytes / 1_048_576:.0f} MB."
        )
    image_format = _verified_format(upload)
    image = _decoded_pixels(upload)
    return _reencode(image, image_format)


def _open(upload) -> Image.Image:
    from PIL import Image, UnidentifiedImageError

    upload.seek(0)
    with warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that: make it an error.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(upload, formats=ALLOWED_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise reject("The image has too many pixels to be processed safely.") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise reject("Upload a JPEG, PNG or WebP image. This file is not one of them.") from None
    if image.width * image.height > settings.MAX_IMAGE_PIXELS:
        raise reject(
            f"The image is {image.width}x{image.height} pixels; at most "
            f"{settings.MAX_IMAGE_PIXELS:,} pixels are accepted."
        )
    return image


def _verified_format(upload) -> str:
    image = _open(upload)
    try:
        image.verify()
    except Exception:  # Pillow raises many types for a damaged file
        raise reject("The image file is damaged or incomplete.") from None
    return image.format


def _decoded_pixels(upload) -> Image.Image:
    # verify() leaves the image unusable: open again and decode every pixel, which catches
    # truncated data that verify() does not.
    image = _open(upload)
    try:
        image.load()
    except Exception:
        raise reject("The image file is damaged or incomplete.") from None
    return image


def _reencode(image: Image.Image, image_format: str) -> NormalizedImage:
    from PIL import ImageOps

    image = ImageOps.exif_transpose(image)
    if image_format == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    elif image.mode not in ("RGB", "RGBA", "L", "LA", "P"):
        image = image.convert("RGBA")
    icc_profile = image.info.get("icc_profile")
    # Drop every other piece of metadata (EXIF, XMP, text chunks, comments).
    image.info = {}
    out = io.BytesIO()
    options = {"icc_profile": icc_profile} if icc_profile else {}
    if image_format == "JPEG":
        options.update(quality=90, optimize=True)
    elif image_format == "WEBP":
        options.update(quality=90)
    image.save(out, format=image_format, **options)
    return NormalizedImage(out.getvalue(), image_format, image.width, image.height)


def make_thumbnail(source, size: int) -> bytes:
    """A WebP no wider or taller than `size`, from an already normalised image file."""
    from PIL import Image

    with Image.open(source, formats=ALLOWED_FORMATS) as image:
        image.load()
        image.thumbnail((size, size))
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.getbands() or image.mode == "P" else "RGB")
        out = io.BytesIO()
        image.save(out, format="WEBP", quality=82)
    return out.getvalue()


def thumbnail_name(image_name: str, label: str) -> str:
    stem = image_name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return f"products/thumbs/{stem[:2]}/{stem}-{THUMBNAIL_SIZES[label]}.webp"

"""Uploads through the admin: bad files are refused with a reason and leave no trace."""

import io
import struct
import zlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from shop.catalog.models import Product, ProductImage
from tests.conftest import jpeg_bytes, png_bytes


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width=30_000, height=30_000) -> bytes:
    """A small file that claims 30000x30000 pixels: decoding it would need ~2.7 GB."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    rows = zlib.compress(b"\x00" * (width * 3 + 1) * 4)
    return b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")


def noisy_jpeg(width=400, height=300) -> bytes:
    out = io.BytesIO()
    Image.effect_noise((width, height), 80).convert("RGB").save(out, format="JPEG")
    return out.getvalue()


BAD_UPLOADS = {
    "text renamed .jpg": ("notes.jpg", b"just some text, not an image\n" * 20, "not one of them"),
    "truncated JPEG": ("cut.jpg", noisy_jpeg()[:20_000], "damaged or incomplete"),
    "30000x30000 PNG bomb": ("bomb.png", png_bomb(), "pixels"),
    "11 MB file": ("huge.jpg", jpeg_bytes() + b"\0" * (11 * 1024 * 1024), "at most 10 MB"),
    "SVG": (
        "logo.svg",
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "not one of them",
    ),
    "PNG signature then HTML": (
        "page.png",
        b"\x89PNG\r\n\x1a\n<html><script>alert(document.cookie)</script></html>",
        "not one of them",
    ),
}


def files_under(root):
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def admin_add_product_post(client, upload, sku="UP-1"):
    return client.post(
        "/admin/catalog/product/add/",
        {
            "category": Product._meta.get_field("category").related_model.objects.get().pk,
            "name": "Uploaded",
            "slug": f"uploaded-{sku.lower()}",
            "sku": sku,
            "description": "",
            "price": "9.99",
            "stock": "5",
            "is_active": "on",
            "images-TOTAL_FORMS": "1",
            "images-INITIAL_FORMS": "0",
            "images-MIN_NUM_FORMS": "0",
            "images-MAX_NUM_FORMS": "1000",
            "images-0-image": upload,
            "images-0-alt_text": "front",
            "images-0-position": "0",
        },
    )


@pytest.mark.parametrize("case", BAD_UPLOADS, ids=list(BAD_UPLOADS))
def test_bad_upload_is_refused_and_nothing_is_written(case, admin_client, category, media_root):
    name, content, reason = BAD_UPLOADS[case]
    before = files_under(media_root)

    response = admin_add_product_post(admin_client, SimpleUploadedFile(name, content))

    assert response.status_code == 200  # the form comes back with its errors
    errors = response.context["inline_admin_formsets"][0].formset.errors[0]["image"]
    assert reason in " ".join(errors)
    assert reason in response.content.decode()
    assert not Product.objects.exists()
    assert files_under(media_root) == before


def test_script_in_png_text_chunk_is_stored_reencoded_without_it(admin_client, category, media_root):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "<script>alert('x')</script>")
    original = png_bytes(120, 80, pnginfo=info)
    assert b"<script>" in original

    response = admin_add_product_post(admin_client, SimpleUploadedFile("evil.png", original))

    assert response.status_code == 302, response.content.decode()[:2000]
    image = ProductImage.objects.get()
    stored = (media_root / image.image.name).read_bytes()
    assert b"<script>" not in stored
    assert stored != original
    with Image.open(io.BytesIO(stored)) as reopened:
        assert reopened.format == "PNG"
        assert reopened.size == (120, 80)
        assert not getattr(reopened, "text", {})


def test_stored_name_is_a_content_hash_not_the_uploaders_name(admin_client, category):
    response = admin_add_product_post(admin_client, SimpleUploadedFile("My Holiday Photo.jpg", jpeg_bytes()))

    assert response.status_code == 302
    name = ProductImage.objects.get().image.name
    assert name.startswith("products/")
    assert "Holiday" not in name
    assert len(name.rsplit("/", 1)[-1].split(".")[0]) == 64


def test_exif_orientation_is_applied_and_metadata_removed(category, make_product, media_root):
    from shop.catalog.services import add_product_image

    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    exif[0x010F] = "SecretCam"  # camera make: metadata that must not survive
    upload = SimpleUploadedFile("rotated.jpg", jpeg_bytes(200, 100, exif=exif.tobytes()))

    image = add_product_image(make_product(), upload)

    stored = (media_root / image.image.name).read_bytes()
    assert b"SecretCam" not in stored
    with Image.open(io.BytesIO(stored)) as reopened:
        assert reopened.size == (100, 200)
        assert not reopened.getexif()
    assert (image.width, image.height) == (100, 200)

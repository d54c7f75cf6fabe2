"""Image files follow their rows: thumbnails after commit, deletion only after commit."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from PIL import Image

from shop.catalog.models import ProductImage
from shop.catalog.services import add_product_image
from tests.conftest import png_bytes


def upload(colour="red", size=(1200, 900)):
    return SimpleUploadedFile("photo.png", png_bytes(*size, colour=colour))


def test_thumbnails_are_made_after_commit(make_product, media_root, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        image = add_product_image(make_product(), upload())
    # Until the task has run, pages fall back to the original.
    assert image.small_url == image.image.url
    assert len(callbacks) == 1

    callbacks[0]()  # the Celery task (eager in tests)

    image.refresh_from_db()
    for name, size in ((image.thumbnail_small, 300), (image.thumbnail_large, 800)):
        with Image.open(media_root / name) as thumb:
            assert thumb.format == "WEBP"
            assert max(thumb.size) == size
    assert image.small_url.endswith("-300.webp")


def test_deleting_an_image_removes_its_files_after_commit(
    make_product, media_root, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        image = add_product_image(make_product(), upload())
    image.refresh_from_db()
    names = image.stored_names()
    assert len(names) == 3
    assert all((media_root / name).exists() for name in names)

    with django_capture_on_commit_callbacks(execute=True):
        image.delete()

    assert not any((media_root / name).exists() for name in names)


@pytest.mark.django_db(transaction=True)
def test_rolled_back_delete_keeps_the_file(make_product, media_root):
    image = add_product_image(make_product(), upload())
    path = media_root / image.image.name

    def delete_then_fail():
        with transaction.atomic():
            ProductImage.objects.get(pk=image.pk).delete()
            raise RuntimeError("something failed later in the same transaction")

    with pytest.raises(RuntimeError):
        delete_then_fail()

    assert ProductImage.objects.filter(pk=image.pk).exists()
    assert path.exists()


def test_identical_uploads_share_a_file_that_outlives_one_of_them(
    make_product, media_root, django_capture_on_commit_callbacks
):
    first = add_product_image(make_product(), upload("green"))
    second = add_product_image(make_product(), upload("green"))
    assert first.image.name == second.image.name

    with django_capture_on_commit_callbacks(execute=True):
        first.delete()

    assert (media_root / second.image.name).exists()

"""Image files follow their rows: thumbnails after commit, deletion only after commit; in both
media storages (the uploads directory and an S3 bucket, see conftest.py)."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from PIL import Image

from shop.catalog.models import ProductImage
from shop.catalog.services import add_product_image
from tests.conftest import png_bytes


def upload(colour="red", size=(1200, 900)):
    return SimpleUploadedFile("photo.png", png_bytes(*size, colour=colour))


def test_thumbnails_are_made_after_commit(make_product, stored_files, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        image = add_product_image(make_product(), upload())
    # Until the task has run, pages fall back to the original.
    assert image.small_url == image.image.url
    assert len(callbacks) == 1

    callbacks[0]()  # the Celery task (eager in tests)

    image.refresh_from_db()
    for name, size in ((image.thumbnail_small, 300), (image.thumbnail_large, 800)):
        with Image.open(io.BytesIO(stored_files.read(name))) as thumb:
            assert thumb.format == "WEBP"
            assert max(thumb.size) == size
    assert image.small_url.endswith("-300.webp")


def test_deleting_an_image_removes_its_files_after_commit(
    make_product, stored_files, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        image = add_product_image(make_product(), upload())
    image.refresh_from_db()
    names = image.stored_names()
    assert len(names) == 3
    assert all(stored_files.exists(name) for name in names)

    with django_capture_on_commit_callbacks(execute=True):
        image.delete()

    assert not any(stored_files.exists(name) for name in names)


@pytest.mark.django_db(transaction=True)
def test_rolled_back_delete_keeps_the_file(make_product, stored_files):
    image = add_product_image(make_product(), upload())

    def delete_then_fail():
        with transaction.atomic():
            ProductImage.objects.get(pk=image.pk).delete()
            raise RuntimeError("something failed later in the same transaction")

    with pytest.raises(RuntimeError):
        delete_then_fail()

    assert ProductImage.objects.filter(pk=image.pk).exists()
    assert stored_files.exists(image.image.name)


def test_identical_uploads_share_a_file_that_outlives_one_of_them(
    make_product, stored_files, django_capture_on_commit_callbacks
):
    first = add_product_image(make_product(), upload("green"))
    second = add_product_image(make_product(), upload("green"))
    assert first.image.name == second.image.name

    with django_capture_on_commit_callbacks(execute=True):
        first.delete()

    assert stored_files.exists(second.image.name)


@pytest.mark.django_db(transaction=True)
def test_cleanup_never_deletes_a_file_that_a_concurrent_upload_is_starting_to_use(make_product, stored_files):
    """Row A is deleted while row B, with the same content, is being saved but not committed:
    the clean-up must wait for B and then keep the shared file."""
    import threading

    from django.db import connections

    first = add_product_image(make_product(), upload("green"))
    second_product = make_product()
    saved, proceed = threading.Event(), threading.Event()

    def save_twin_slowly():
        try:
            with transaction.atomic():
                add_product_image(second_product, upload("green"))
                saved.set()
                proceed.wait(timeout=30)
        finally:
            connections.close_all()

    def delete_first():
        try:
            ProductImage.objects.get(pk=first.pk).delete()  # clean-up runs after this commit
        finally:
            connections.close_all()

    twin = threading.Thread(target=save_twin_slowly)
    twin.start()
    assert saved.wait(timeout=30)
    deleter = threading.Thread(target=delete_first)
    deleter.start()
    deleter.join(timeout=1)
    assert deleter.is_alive(), "the clean-up should wait for the uncommitted upload"
    proceed.set()
    twin.join(timeout=30)
    deleter.join(timeout=30)

    assert ProductImage.objects.get().image.name == first.image.name
    assert stored_files.exists(first.image.name)

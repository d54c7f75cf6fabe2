"""MEDIA_STORAGE=s3 and today's backups: the set holds the database; the images are in the
bucket, which the set does not copy (README "Scaling out": backups). This pins down what the
manifest says, so the gap is visible rather than silent."""

import json
from pathlib import Path

import pytest

from shop.catalog.models import ProductImage
from tests.backups.conftest import backup_now, run_command

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_backup_in_s3_mode_records_the_bucket_images_as_not_in_the_set(media_bucket, shop_data, settings):
    names = set()
    for row in ProductImage.objects.all():
        names.update(row.stored_names())
    assert set(media_bucket.names()) == names  # the images are in the bucket, not on disk

    set_id = backup_now("--no-upload")

    manifest = json.loads((Path(settings.BACKUP_PATH) / set_id / "manifest.json").read_text())
    uploads = manifest["uploads"]
    assert uploads["file_count"] == 0
    assert set(uploads["referenced_but_missing"]) == names


def test_the_database_of_such_a_set_restores_and_its_images_are_still_in_the_bucket(
    media_bucket, shop_data, django_capture_on_commit_callbacks
):
    backup_now("--no-upload")
    image = ProductImage.objects.filter(product=shop_data[1]).get()
    image_id = image.pk
    with django_capture_on_commit_callbacks(execute=True):
        image.delete()  # the row, and (after commit, unreferenced) its files in the bucket
    assert image.image.name not in media_bucket.names()

    run_command("restore_backup", "--latest", "--yes", "--only", "db")

    restored = ProductImage.objects.get(pk=image_id)
    # The row is back; the deleted object is not: the bucket itself is not in the set.
    assert restored.image.name not in media_bucket.names()
    others = ProductImage.objects.exclude(pk=image_id)
    assert all(row.image.name in media_bucket.names() for row in others)

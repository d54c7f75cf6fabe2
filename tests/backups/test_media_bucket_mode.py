"""MEDIA_STORAGE=s3 and today's backups: the set holds the database; the images are in the
bucket, which the set does not copy (README "Scaling out": backups). This pins down what the
manifest says, so the gap is visible rather than silent."""

import pytest

from shop.backups import local
from shop.catalog.models import ProductImage
from tests.backups.conftest import backup_now

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_backup_in_s3_mode_records_the_bucket_images_as_not_in_the_set(media_bucket, shop_data):
    names = set()
    for row in ProductImage.objects.all():
        names.update(row.stored_names())
    assert set(media_bucket.names()) == names  # the images are in the bucket, not on disk

    set_id = backup_now("--no-upload")

    uploads = local.local_manifest(set_id)["uploads"]
    assert uploads["file_count"] == 0
    assert set(uploads["referenced_but_missing"]) == names

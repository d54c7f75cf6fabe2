"""The image step of a restore to a time when the backup volume was lost (shop/backups/pitr/images.py):
the images the rows name (read from the real PostgreSQL test database) whose blobs are only on S3
(a moto server) are fetched, decrypted when they were uploaded encrypted, and checked."""

import hashlib
import shutil
from pathlib import Path

import pytest
from django.db import connection

from shop.backups import blobs, s3
from shop.backups.crypto import IdentityRefused
from shop.backups.errors import CorruptSet
from shop.backups.pitr import images
from shop.catalog import media
from shop.catalog.services import add_product_image
from tests.backups.conftest import image_upload
from tests.backups.test_encryption import Key

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def archiving(settings):
    """The continuous image archive puts each image's blob into the local store and on S3."""
    settings.BACKUP_ARCHIVE_IMAGES = True
    settings.IMAGE_ARCHIVE_MAX_RETRIES = 0


def rows_media_names() -> set[str]:
    connection.ensure_connection()
    return media.referenced_media_names(connection.connection)


def lose_the_server_and_the_backup_volume(media_root: Path, settings) -> None:
    """MEDIA_ROOT's files and the whole blob store are gone; S3 still holds the blobs."""
    shutil.rmtree(media_root / "products")
    shutil.rmtree(Path(settings.BACKUP_PATH))


def the_image(names: set[str]) -> tuple[str, str]:
    ((name, sha256),) = [(name, media.name_sha256(name)) for name in names if media.name_sha256(name)]
    return name, sha256


def leftovers(media_root: Path, settings) -> list[str]:
    found = [path.name for path in media_root.rglob(".pitr-incoming-*")]
    store = blobs.store_root()
    return found + ([path.name for path in store.glob(f"{blobs.TEMP_PREFIX}*")] if store.is_dir() else [])


def test_an_image_whose_blob_is_only_on_s3_is_fetched_checked_and_put_in_place(
    make_product, media_root, s3_bucket, settings
):
    add_product_image(make_product(), image_upload("teal"))
    names = rows_media_names()
    name, sha256 = the_image(names)
    lose_the_server_and_the_backup_volume(media_root, settings)
    on_s3 = len(s3.remote_blob_names(s3_bucket))  # the image and its thumbnails' blobs
    assert on_s3 >= 2
    plan = images.plan_lines(None)
    assert "(0 blob(s))" in plan[0]
    assert plan[1].startswith(
        f"  else from S3 {s3.describe_target()}/blobs/ ({on_s3} blob(s)): {on_s3} are only there"
    )

    brought = images.bring_images(names)

    assert brought.problems == []
    assert brought.from_s3 == 1  # the image; its thumbnails are made again from it
    assert hashlib.sha256((media_root / name).read_bytes()).hexdigest() == sha256
    assert blobs.blob_path(sha256).is_file()  # the local store has it again
    assert all((media_root / other).is_file() for other in names)
    assert images.bring_images(names).from_s3 == 0  # in place now: nothing fetched again


def test_a_damaged_blob_on_s3_is_refused_and_nothing_is_placed(make_product, media_root, s3_bucket, settings):
    add_product_image(make_product(), image_upload("plum"))
    names = rows_media_names()
    name, sha256 = the_image(names)
    lose_the_server_and_the_backup_volume(media_root, settings)
    key = s3.blob_object_key(sha256)
    s3_bucket.put_object(Bucket=settings.BACKUP_S3_BUCKET, Key=key, Body=b"not the image any more")

    with pytest.raises(
        CorruptSet, match=f"blob {blobs.blob_key(sha256)} on S3 has SHA-256 .*: it is damaged"
    ):
        images.bring_images(names)

    assert not (media_root / name).exists()
    assert not blobs.blob_path(sha256).exists()
    assert leftovers(media_root, settings) == []


def test_an_encrypted_blob_needs_the_identity_and_is_refused_clearly_without_it(
    make_product, media_root, s3_bucket, settings, tmp_path
):
    key = Key(tmp_path, "key")
    settings.BACKUP_AGE_RECIPIENTS = key.public
    add_product_image(make_product(), image_upload("olive"))
    names = rows_media_names()
    name, sha256 = the_image(names)
    stored = s3_bucket.get_object(Bucket=settings.BACKUP_S3_BUCKET, Key=s3.blob_object_key(sha256))
    assert stored["Metadata"].get("encrypted")  # ciphertext on S3
    lose_the_server_and_the_backup_volume(media_root, settings)
    assert any("encrypted and no identity is given" in line for line in images.plan_lines(None))

    with pytest.raises(IdentityRefused, match=r"is encrypted .* no identity was given: pass --identity FILE"):
        images.bring_images(names)
    with pytest.raises(IdentityRefused, match="not one of its recipients"):
        images.bring_images(names, identity=str(Key(tmp_path, "other").file))
    assert not (media_root / name).exists()
    assert leftovers(media_root, settings) == []

    assert (
        images.plan_lines(str(key.file))[-1]
        == f"  encrypted blobs are decrypted with the identity {key.file}"
    )
    brought = images.bring_images(names, identity=str(key.file))

    assert (brought.problems, brought.from_s3) == ([], 1)
    assert hashlib.sha256((media_root / name).read_bytes()).hexdigest() == sha256


def test_an_image_neither_local_nor_on_s3_is_named(make_product, media_root, s3_bucket, settings):
    add_product_image(make_product(), image_upload("navy"))
    names = rows_media_names()
    name, sha256 = the_image(names)
    lose_the_server_and_the_backup_volume(media_root, settings)
    s3_bucket.delete_object(Bucket=settings.BACKUP_S3_BUCKET, Key=s3.blob_object_key(sha256))

    brought = images.bring_images(names)

    assert brought.from_s3 == 0
    assert any(
        problem.startswith(f"{name}: missing in MEDIA_ROOT, in the blob store and on S3")
        for problem in brought.problems
    )

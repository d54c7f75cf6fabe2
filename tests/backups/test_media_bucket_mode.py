"""MEDIA_STORAGE=s3: a backup set lists the media bucket's objects and copies them server-side
into the backup bucket's blobs (shop/backups/media_bucket.py); a restore copies them back,
staged and checked first (shop/backups/media_restore.py). Against moto in server mode: its
request log (werkzeug's, in this process) shows which objects were read or written."""

import hashlib
import json
import logging
import os
from pathlib import Path

import pytest
from django.core.management.base import CommandError

from shop.backups import media_bucket as media_bucket_module
from shop.backups import retention, s3
from shop.backups.progress import LoggingReporter
from shop.catalog.models import ProductImage
from shop.catalog.services import add_product_image, generate_thumbnails_for
from tests.backups.conftest import backup_now, image_upload, run_command
from tests.backups.test_encryption import Key

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def requests_seen(caplog):
    """The request lines moto's server logged ("GET /bucket/key HTTP/1.1"), from now on."""
    caplog.set_level(logging.INFO, logger="werkzeug")

    def lines(method: str, path_start: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if f'"{method} {path_start}' in r.getMessage()]

    return lines


def manifest_of(settings, set_id: str) -> dict:
    return json.loads((Path(settings.BACKUP_PATH) / set_id / "manifest.json").read_text())


def blob_key(settings, sha256: str) -> str:
    return f"{settings.BACKUP_S3_PREFIX}/blobs/{sha256[:2]}/{sha256}"


def bucket_names() -> set[str]:
    names = set()
    for row in ProductImage.objects.all():
        names.update(row.stored_names())
    return names


def test_a_backup_copies_the_bucket_objects_server_side(
    media_bucket, s3_bucket, shop_data, settings, requests_seen
):
    assert set(media_bucket.names()) == bucket_names()

    set_id = backup_now()

    # Not one image byte went through the shop: no GET of an object of the media bucket.
    assert requests_seen("GET", f"/{media_bucket.name}/{media_bucket.prefix}/") == []
    assert requests_seen("PUT", f"/{settings.BACKUP_S3_BUCKET}/{settings.BACKUP_S3_PREFIX}/blobs/")
    uploads = manifest_of(settings, set_id)["uploads"]
    assert {entry["path"] for entry in uploads["files"]} == set(media_bucket.names())
    assert uploads["referenced_but_missing"] == []
    for entry in uploads["files"]:
        data = media_bucket.read(entry["path"])
        assert entry["stored"] == "bucket"
        assert (entry["sha256"], entry["size"]) == (hashlib.sha256(data).hexdigest(), len(data))
        blob = s3_bucket.get_object(Bucket=settings.BACKUP_S3_BUCKET, Key=blob_key(settings, entry["sha256"]))
        assert blob["Body"].read() == data
    assert not (Path(settings.BACKUP_PATH) / "blobs").exists() or not any(
        (Path(settings.BACKUP_PATH) / "blobs").rglob("*")
    )  # the local set holds the manifest and the dump, not the images
    lines = run_command("verify_backup", set_id)
    assert any("images in the backup bucket" in line for line in lines)


def test_the_second_backup_copies_only_the_new_objects(
    media_bucket, s3_bucket, shop_data, settings, requests_seen, caplog
):
    backup_now()
    caplog.clear()
    image = add_product_image(shop_data[2], image_upload("purple"))
    generate_thumbnails_for(image.pk)
    new_objects = set(ProductImage.objects.get(pk=image.pk).stored_names())

    set_id = backup_now()

    copies = requests_seen("PUT", f"/{settings.BACKUP_S3_BUCKET}/{settings.BACKUP_S3_PREFIX}/blobs/")
    files = manifest_of(settings, set_id)["uploads"]["files"]
    new_blobs = {entry["sha256"] for entry in files if entry["path"] in new_objects}
    copied = {
        line.split("/blobs/")[1].split()[0].split("/")[1] for line in copies if "/.incoming-" not in line
    }
    assert copied == new_blobs  # the new image's blobs, none of the earlier ones
    # Each thumbnail (no hash in its name) went through a temporary key, to learn S3's SHA-256.
    assert len([line for line in copies if "/.incoming-" in line]) == 2


def test_a_restore_brings_a_deleted_image_back_into_the_bucket(
    media_bucket, s3_bucket, shop_data, django_capture_on_commit_callbacks
):
    backup_now()
    image = ProductImage.objects.filter(product=shop_data[1]).get()
    image_id, names = image.pk, image.stored_names()
    originals = {name: media_bucket.read(name) for name in names}
    with django_capture_on_commit_callbacks(execute=True):
        image.delete()  # the row, and (after commit, unreferenced) its objects in the bucket
    assert not set(names) & set(media_bucket.names())

    plan = run_command("restore_backup", "--latest", "--dry-run")
    assert {f"would copy {name} ({len(originals[name])} bytes)" for name in names} <= {
        x.strip() for x in plan
    }
    assert not set(names) & set(media_bucket.names())  # a dry run copies nothing

    run_command("restore_backup", "--latest", "--yes")

    assert ProductImage.objects.get(pk=image_id).image.name == names[0]
    for name in names:
        assert media_bucket.read(name) == originals[name]
        assert media_bucket.head(name)["CacheControl"] == "public, max-age=31536000, immutable"
    assert set(media_bucket.names()) == bucket_names()  # and no staging prefix is left
    assert media_bucket.head(names[0])["ContentType"] == "image/png"


@pytest.mark.parametrize("damage", ["changed", "missing"])
def test_a_damaged_backup_copy_is_refused_before_anything_changes(
    media_bucket, s3_bucket, shop_data, settings, django_capture_on_commit_callbacks, damage
):
    set_id = backup_now()
    image = ProductImage.objects.filter(product=shop_data[1]).get()
    image_id, name = image.pk, image.image.name
    with django_capture_on_commit_callbacks(execute=True):
        image.delete()
    entry = next(e for e in manifest_of(settings, set_id)["uploads"]["files"] if e["path"] == name)
    key = blob_key(settings, entry["sha256"])
    if damage == "changed":
        s3_bucket.put_object(Bucket=settings.BACKUP_S3_BUCKET, Key=key, Body=b"x" * entry["size"])
    else:
        s3_bucket.delete_object(Bucket=settings.BACKUP_S3_BUCKET, Key=key)
    before = media_bucket.names()

    with pytest.raises(CommandError, match=f"{key}.*Nothing was changed"):
        run_command("restore_backup", "--latest", "--yes")

    assert not ProductImage.objects.filter(pk=image_id).exists()  # the database was not swapped
    assert media_bucket.names() == before  # nothing staged or added in the media bucket


def test_images_go_through_the_local_store_when_the_buckets_do_not_share_credentials(
    media_bucket, s3_bucket, shop_data, settings, requests_seen, caplog
):
    settings.BACKUP_S3_ACCESS_KEY_ID = "another-key"  # moto accepts it; no server-side copy then

    set_id = backup_now()

    assert "no server-side copy" in caplog.text
    files = manifest_of(settings, set_id)["uploads"]["files"]
    assert {entry["stored"] for entry in files} == {"blob"}
    for entry in files:
        local = Path(settings.BACKUP_PATH) / "blobs" / entry["sha256"][:2] / entry["sha256"]
        assert local.read_bytes() == media_bucket.read(entry["path"])
        s3_bucket.head_object(Bucket=settings.BACKUP_S3_BUCKET, Key=blob_key(settings, entry["sha256"]))


def test_retention_keeps_the_blobs_a_bucket_set_names(media_bucket, s3_bucket, shop_data, settings):
    set_id = backup_now()
    keys = {blob_key(settings, e["sha256"]) for e in manifest_of(settings, set_id)["uploads"]["files"]}

    retention.prune_now(LoggingReporter())

    listed = s3_bucket.list_objects_v2(
        Bucket=settings.BACKUP_S3_BUCKET, Prefix=f"{settings.BACKUP_S3_PREFIX}/blobs/"
    )
    assert keys <= {item["Key"] for item in listed["Contents"]}
    assert s3.remote_set_intact(s3.client(), s3.remote_summary(s3.client(), set_id))


def test_an_object_above_the_multipart_threshold_is_copied_part_by_part(
    media_bucket, s3_bucket, settings, monkeypatch, requests_seen
):
    # 5 GB objects in a test are out of reach: the threshold comes down to 1 MiB instead, with
    # parts of 5 MiB (S3's smallest but the last).
    monkeypatch.setattr(media_bucket_module, "MULTIPART_COPY_THRESHOLD", 1024 * 1024)
    monkeypatch.setattr(media_bucket_module, "COPY_PART_SIZE", 5 * 1024 * 1024)
    data = os.urandom(6 * 1024 * 1024)
    sha256 = hashlib.sha256(data).hexdigest()
    name = f"products/{sha256[:2]}/{sha256}.png"
    media_bucket.put(name, data)

    set_id = backup_now()

    copies = requests_seen("PUT", f"/{settings.BACKUP_S3_BUCKET}/{blob_key(settings, sha256)}?")
    assert len([line for line in copies if "partNumber=" in line]) == 2  # UploadPartCopy, twice
    assert requests_seen("GET", f"/{media_bucket.name}/{media_bucket.prefix}/") == []
    [entry] = manifest_of(settings, set_id)["uploads"]["files"]
    assert (entry["path"], entry["sha256"], entry["stored"]) == (name, sha256, "bucket")
    blob = s3_bucket.get_object(Bucket=settings.BACKUP_S3_BUCKET, Key=blob_key(settings, sha256))
    assert blob["Body"].read() == data
    run_command("verify_backup", set_id)


def test_an_encrypted_set_lists_its_bucket_blobs_in_its_plaintext_index(
    media_bucket, s3_bucket, shop_data, settings, tmp_path
):
    settings.BACKUP_AGE_RECIPIENTS = Key(tmp_path, "key").public  # the dump and manifest: encrypted
    set_id = backup_now()
    bucket_blobs = {e["sha256"]: e["size"] for e in manifest_of(settings, set_id)["uploads"]["files"]}

    client = s3.client()
    index = s3.remote_summary(client, set_id)  # the manifest on S3 is encrypted: this is the index
    assert index["bucket_blobs"] == bucket_blobs
    assert s3.remote_set_intact(client, index)
    retention.prune_now(LoggingReporter())
    assert bucket_blobs.keys() <= s3.remote_blob_names(client)  # the sweep kept them
    # Server-side copies are plaintext (public product images): the same bytes as the bucket's.
    entry = manifest_of(settings, set_id)["uploads"]["files"][0]
    blob = s3_bucket.get_object(Bucket=settings.BACKUP_S3_BUCKET, Key=blob_key(settings, entry["sha256"]))
    assert blob["Body"].read() == media_bucket.read(entry["path"])

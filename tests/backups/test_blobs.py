"""Incremental sets: uploads kept once in the blob store (and on S3), by content.

Each set's manifest names its upload files by SHA-256; a second backup writes and uploads only
the blobs that are new. Retention drops sets first and then the blobs no kept set names, under
the backup lock. Restores assemble the uploads from blobs, every hash checked first.
"""

import hashlib
import io
import json
import os
import tarfile
import threading

import pytest
from django.core.management.base import CommandError

from shop.backups import blobs, local, retention, status
from shop.backups.backup import run_backup, upload_local_set
from shop.backups.errors import BackupBusy, CorruptSet
from shop.backups.manifest import MANIFEST_NAME, UPLOADS_FILE, read_manifest
from shop.backups.progress import LoggingReporter
from shop.catalog.models import Product, ProductImage
from shop.catalog.services import add_product_image, generate_thumbnails_for
from tests.backups.conftest import (
    backup_now,
    derived_databases,
    hidden_entries,
    image_upload,
    make_old,
    run_command,
    table_fingerprints,
    upload_fingerprints,
)

pytestmark = pytest.mark.django_db(transaction=True)


def local_blobs(backup_path) -> dict[str, int]:
    """{sha256: size} of every blob file in the local store."""
    root = backup_path / "blobs"
    return {path.name: path.stat().st_size for path in root.glob("*/*")} if root.is_dir() else {}


def remote_blobs(client, bucket) -> dict[str, int]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="shop/backups/blobs/")
    return {
        item["Key"].rsplit("/", 1)[1]: item["Size"] for page in pages for item in page.get("Contents", [])
    }


def add_image(product: Product, colour: str) -> ProductImage:
    image = add_product_image(product, image_upload(colour, size=(120, 90), noise=True))
    generate_thumbnails_for(image.pk)
    image.refresh_from_db()
    return image


def files_of(image: ProductImage, media_root) -> dict[str, bytes]:
    return {name: (media_root / name).read_bytes() for name in image.stored_names()}


def test_the_blob_layout_is_content_addressed(shop_data, media_root, backup_settings, s3_bucket):
    set_id = backup_now()
    manifest = read_manifest(local.set_dir(set_id))
    stored = {entry.path: entry for entry in manifest.uploads.files}
    assert set(stored) == set(upload_fingerprints(media_root))  # every upload file is listed
    for path, entry in stored.items():
        data = (media_root / path).read_bytes()
        assert entry.sha256 == hashlib.sha256(data).hexdigest()
        assert (entry.size, entry.mode) == (len(data), 0o644)
        assert entry.stored == "blob"  # images and thumbnails: immutable names
        blob = backup_settings.BACKUP_PATH / "blobs" / entry.sha256[:2] / entry.sha256
        assert blob.read_bytes() == data
        key = f"shop/backups/blobs/{entry.sha256[:2]}/{entry.sha256}"
        assert s3_bucket.get_object(Bucket=backup_settings.BACKUP_S3_BUCKET, Key=key)["Body"].read() == data


def test_a_file_the_catalog_did_not_name_goes_into_the_set_archive(shop_data, media_root):
    (media_root / "products" / "notes.txt").write_text("written by hand, not by the catalog")
    set_id = backup_now("--no-upload")
    manifest = read_manifest(local.set_dir(set_id))
    entry = next(entry for entry in manifest.uploads.files if entry.path == "products/notes.txt")
    assert entry.stored == "archive"
    with tarfile.open(local.set_dir(set_id) / UPLOADS_FILE) as tar:
        assert [m.name for m in tar.getmembers() if m.isfile()] == ["products/notes.txt"]


def test_a_second_backup_writes_and_uploads_only_the_new_blobs(
    shop_data, media_root, backup_settings, s3_bucket
):
    bucket = backup_settings.BACKUP_S3_BUCKET
    first = backup_now()
    local_before, remote_before = local_blobs(backup_settings.BACKUP_PATH), remote_blobs(s3_bucket, bucket)
    assert local_before == remote_before
    assert len(local_before) >= 10
    inodes_before = {sha: blobs.blob_path(sha).stat().st_ino for sha in local_before}
    new_files = files_of(add_image(shop_data[1], "fresh"), media_root)
    new_hashes = {hashlib.sha256(data).hexdigest(): len(data) for data in new_files.values()}

    output = "\n".join(run_command("backup_now"))

    local_after, remote_after = local_blobs(backup_settings.BACKUP_PATH), remote_blobs(s3_bucket, bucket)
    assert {sha: local_after[sha] for sha in local_after.keys() - local_before.keys()} == new_hashes
    assert {sha: remote_after[sha] for sha in remote_after.keys() - remote_before.keys()} == new_hashes
    assert f"{len(new_hashes)} new blob(s)" in output
    assert f"{len(local_before)} already offsite, {len(new_hashes)} to upload" in output
    # The old blobs were not rewritten (same inode), and the set's own archive holds no file.
    assert {sha: blobs.blob_path(sha).stat().st_ino for sha in local_before} == inodes_before
    second = output.splitlines()[-1]
    with tarfile.open(local.set_dir(second) / UPLOADS_FILE) as tar:
        assert [member.name for member in tar if member.isfile()] == []  # only the directories
    assert (
        read_manifest(local.set_dir(first)).blobs().keys()
        < read_manifest(local.set_dir(second)).blobs().keys()
    )


def test_a_restore_from_the_fifth_of_five_sets_equals_the_data_at_its_time(shop_data, media_root):
    states, set_ids = [], []
    for n in range(5):
        if n == 1:
            add_image(shop_data[2], "second")
        elif n == 2:
            ProductImage.objects.filter(product=shop_data[0]).first().delete()  # its files go too
        elif n == 3:
            Product.objects.filter(pk=shop_data[3].pk).update(stock=7)
            (media_root / "products" / "manual.txt").write_text(f"by hand, set {n}")
        elif n == 4:
            add_image(shop_data[3], "fifth")
            (media_root / "products" / "manual.txt").write_text(f"changed by hand, set {n}")
        states.append((table_fingerprints(), upload_fingerprints(media_root)))
        set_ids.append(backup_now("--no-upload"))
    assert len({json.dumps(files, sort_keys=True) for _, files in states}) == 5  # every set differs

    ProductImage.objects.all().delete()
    Product.objects.filter(pk=shop_data[0].pk).update(stock=0)

    run_command("restore_backup", set_ids[4], "--yes")
    assert (table_fingerprints(), upload_fingerprints(media_root)) == states[4]
    # The store and MEDIA_ROOT share a filesystem here: the images are hard links, not copies.
    image = ProductImage.objects.exclude(image="").first().image.name
    sha = hashlib.sha256((media_root / image).read_bytes()).hexdigest()
    assert (media_root / image).stat().st_ino == blobs.blob_path(sha).stat().st_ino

    run_command("restore_backup", set_ids[1], "--yes")
    assert (table_fingerprints(), upload_fingerprints(media_root)) == states[1]


def test_retention_deletes_only_the_blobs_no_kept_set_uses(
    shop_data, media_root, backup_settings, s3_bucket, settings
):
    bucket = backup_settings.BACKUP_S3_BUCKET
    doomed = add_image(shop_data[1], "doomed")
    doomed_hashes = {hashlib.sha256(data).hexdigest() for data in files_of(doomed, media_root).values()}
    old_set = backup_now("--no-upload")
    doomed.delete()
    kept_set = backup_now("--no-upload")
    kept_blobs = read_manifest(local.set_dir(kept_set)).blobs()
    assert doomed_hashes.isdisjoint(kept_blobs)
    assert doomed_hashes <= local_blobs(backup_settings.BACKUP_PATH).keys()
    old_set = make_old(old_set, days=40)
    for set_id in (old_set, kept_set):
        status.record_local_check(set_id, True)
        upload_local_set(set_id, LoggingReporter())
    assert doomed_hashes <= remote_blobs(s3_bucket, bucket).keys()
    leftover = backup_settings.BACKUP_PATH / "blobs" / ".incoming-12345-1"  # a killed backup's
    leftover.write_bytes(b"half a blob")
    settings.BACKUP_LOCAL_RETENTION_DAYS = settings.BACKUP_S3_RETENTION_DAYS = 7

    deleted = retention.prune_now(LoggingReporter())

    assert deleted == {"local": [old_set], "s3": [old_set]}
    assert local_blobs(backup_settings.BACKUP_PATH).keys() == kept_blobs.keys()
    assert remote_blobs(s3_bucket, bucket).keys() == kept_blobs.keys()
    assert not leftover.exists()
    run_command("verify_backup", kept_set, "--deep")
    run_command("verify_backup", kept_set, "--source", "s3")


def test_the_sweep_never_runs_alongside_a_backup(shop_data, media_root, backup_settings, monkeypatch):
    """A backup writing blobs that no manifest names yet holds the lock: the sweep is refused."""
    backup_now("--no-upload")
    add_image(shop_data[0], "during")
    writing, release = threading.Event(), threading.Event()
    real_commit = blobs.BlobWriter.commit

    def paused_commit(writer):
        writing.set()  # the new blobs are written, not yet in place, and no manifest names them
        assert release.wait(30)
        return real_commit(writer)

    monkeypatch.setattr(blobs.BlobWriter, "commit", paused_commit)
    outcome = {}
    backup = threading.Thread(target=lambda: outcome.update(done=run_backup(LoggingReporter(), upload=False)))
    backup.start()
    try:
        assert writing.wait(30)
        pending = list((backup_settings.BACKUP_PATH / "blobs").glob(".incoming-*"))
        assert pending  # the new image and its thumbnails
        with pytest.raises(BackupBusy, match="another backup or restore is running"):
            retention.prune_now(LoggingReporter())
        assert all(path.exists() for path in pending)
    finally:
        release.set()
        backup.join(60)
    set_id = outcome["done"].set_id
    run_command("verify_backup", set_id)  # every blob it names is there and intact
    assert retention.prune_now(LoggingReporter()) == {"local": [], "s3": []}
    run_command("verify_backup", set_id)


def flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    os.chmod(path, 0o640)
    path.write_bytes(bytes(data))


def assert_untouched(live, media_root):
    assert (table_fingerprints(), upload_fingerprints(media_root)) == live
    assert derived_databases() == []
    assert hidden_entries(media_root) == []


def changed_after_backup(shop_data, media_root) -> tuple:
    Product.objects.filter(pk=shop_data[0].pk).update(stock=1)
    (media_root / "products" / "new.txt").write_text("added after the backup")
    return table_fingerprints(), upload_fingerprints(media_root)


def test_a_flipped_byte_in_a_blob_is_refused_before_anything_changes(shop_data, media_root, backup_settings):
    set_id = backup_now("--no-upload")
    image = shop_data[0].images.first().image.name
    sha = hashlib.sha256((media_root / image).read_bytes()).hexdigest()
    flip_byte(blobs.blob_path(sha))
    live = changed_after_backup(shop_data, media_root)

    with pytest.raises(CommandError, match=f"corrupt: blob blobs/{sha[:2]}/{sha} has SHA-256"):
        run_command("restore_backup", set_id, "--yes")
    assert_untouched(live, media_root)
    with pytest.raises(CommandError, match="corrupt"):
        run_command("verify_backup", set_id)
    assert "CORRUPT" in "\n".join(run_command("list_backups"))


def test_a_flipped_byte_in_a_blob_on_s3_is_refused_before_anything_changes(
    shop_data, media_root, backup_settings, s3_bucket
):
    set_id = backup_now()
    image = shop_data[0].images.first().image.name
    data = (media_root / image).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    damaged = bytearray(data)
    damaged[len(damaged) // 2] ^= 0x01
    key = f"shop/backups/blobs/{sha[:2]}/{sha}"
    s3_bucket.put_object(Bucket=backup_settings.BACKUP_S3_BUCKET, Key=key, Body=bytes(damaged))
    blobs.blob_path(sha).unlink()  # the local store lacks it: it has to come from S3
    live = changed_after_backup(shop_data, media_root)

    with pytest.raises(CommandError, match=f"blob blobs/{sha[:2]}/{sha} on S3 has SHA-256 .*damaged"):
        run_command("restore_backup", set_id, "--source", "s3", "--yes")
    assert_untouched(live, media_root)
    assert not blobs.blob_path(sha).exists()  # the damaged copy never entered the store
    assert not list((backup_settings.BACKUP_PATH / "blobs").glob(".incoming-*"))


def test_a_set_restored_from_s3_fetches_only_the_blobs_the_store_lacks(
    shop_data, media_root, backup_settings, s3_bucket
):
    before = (table_fingerprints(), upload_fingerprints(media_root))
    set_id = backup_now()
    gone = sorted(local_blobs(backup_settings.BACKUP_PATH))[:3]
    for sha in gone:
        blobs.blob_path(sha).unlink()
    changed_after_backup(shop_data, media_root)

    output = "\n".join(run_command("restore_backup", set_id, "--source", "s3", "--yes"))

    assert "fetching 3 blob(s)" in output
    assert (table_fingerprints(), upload_fingerprints(media_root)) == before


def old_format_set(set_id: str, media_root) -> None:
    """Turn a set into what the first backup design wrote: every upload in uploads.tar, a
    format-1 manifest without file list; and empty the blob store."""
    set_dir = local.set_dir(set_id)
    manifest = json.loads((set_dir / MANIFEST_NAME).read_text())
    out = io.BytesIO()
    files = sorted(path for path in media_root.rglob("*") if path.is_file())
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(media_root.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(media_root)), recursive=False)
    (set_dir / UPLOADS_FILE).write_bytes(out.getvalue())
    manifest["format"] = 1
    manifest["files"][UPLOADS_FILE] = {
        "size": len(out.getvalue()),
        "sha256": hashlib.sha256(out.getvalue()).hexdigest(),
    }
    manifest["uploads"] = {
        "file_count": len(files),
        "bytes": sum(path.stat().st_size for path in files),
        "referenced_but_missing": [],
    }
    (set_dir / MANIFEST_NAME).write_text(json.dumps(manifest))
    for blob in list(blobs.store_root().glob("*/*")):
        blob.unlink()


def test_a_set_in_the_first_format_still_lists_verifies_and_restores(shop_data, media_root):
    before = (table_fingerprints(), upload_fingerprints(media_root))
    set_id = backup_now("--no-upload")
    old_format_set(set_id, media_root)
    assert read_manifest(local.set_dir(set_id)).uploads.files is None

    assert set_id in "\n".join(run_command("list_backups"))
    assert "test restore gave" in "\n".join(run_command("verify_backup", set_id, "--deep"))
    changed_after_backup(shop_data, media_root)
    run_command("restore_backup", set_id, "--yes")
    assert (table_fingerprints(), upload_fingerprints(media_root)) == before


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda m: m.pop("database"), "'database' is missing"),
        (lambda m: m["database"].update(row_counts="many"), "'row_counts' should be an object"),
        (lambda m: m["uploads"]["files"][0].pop("sha256"), r"uploads\.files\[0\]: 'sha256' is missing"),
        (lambda m: m["uploads"]["files"][0].update(size="12"), "'size' should be an integer"),
        (lambda m: m["files"].pop("db.dump"), "'files' lacks db.dump"),
        (lambda m: m.update(format=99), "format-99 manifest"),
    ],
)
def test_a_damaged_manifest_is_a_corrupt_set_not_a_traceback(shop_data, media_root, damage, message):
    set_id = backup_now("--no-upload")
    path = local.set_dir(set_id) / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    damage(manifest)
    path.write_text(json.dumps(manifest))
    live = (table_fingerprints(), upload_fingerprints(media_root))

    with pytest.raises(CorruptSet, match=message):
        read_manifest(local.set_dir(set_id))
    with pytest.raises(CommandError, match=message):
        run_command("restore_backup", set_id, "--yes")
    with pytest.raises(CommandError, match=message):
        run_command("verify_backup", set_id)
    assert "CORRUPT" in "\n".join(run_command("list_backups"))
    assert (table_fingerprints(), upload_fingerprints(media_root)) == live


def test_the_next_backup_removes_the_temporary_blobs_a_killed_one_left(shop_data, backup_settings):
    backup_now("--no-upload")
    leftover = backup_settings.BACKUP_PATH / "blobs" / ".incoming-99999-7"
    leftover.write_bytes(b"half a blob from a killed backup")
    set_id = backup_now("--no-upload")
    assert not leftover.exists()
    run_command("verify_backup", set_id)


def test_a_set_on_s3_that_lacks_a_blob_is_refused(shop_data, media_root, backup_settings, s3_bucket):
    set_id = backup_now()
    sha = next(iter(read_manifest(local.set_dir(set_id)).blobs()))
    s3_bucket.delete_object(
        Bucket=backup_settings.BACKUP_S3_BUCKET, Key=f"shop/backups/blobs/{sha[:2]}/{sha}"
    )
    live = changed_after_backup(shop_data, media_root)

    with pytest.raises(
        CommandError, match=f"on S3 lacks 1 blob\\(s\\) its manifest names \\(blobs/{sha[:2]}/{sha}"
    ):
        run_command("verify_backup", set_id, "--source", "s3")
    with pytest.raises(CommandError, match=r"it is incomplete\. Nothing was changed"):
        run_command("restore_backup", set_id, "--source", "s3", "--yes")
    assert_untouched(live, media_root)
    assert "intact" not in "\n".join(
        line for line in run_command("list_backups", "--source", "s3") if set_id in line
    )

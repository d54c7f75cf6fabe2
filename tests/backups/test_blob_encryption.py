"""The local blob store encrypted (BACKUP_ENCRYPT_LOCAL, shop/backups/blobs.py): no image's bytes
land in BACKUP_PATH/blobs in plaintext, a restore with the identity brings them back, a check
without it still finds a changed byte, a missing or wrong identity is refused before anything
changes, and S3 gets the local ciphertext as it is. Real PostgreSQL; S3 is a moto server."""

import hashlib
import json
import shutil

import pytest
from django.core.management.base import CommandError

from shop.backups import blobs, crypto, image_archive, local, s3
from shop.backups.crypto import AGE_HEADER, INDEX_NAME
from shop.backups.pitr import images
from shop.catalog.models import ProductImage
from shop.catalog.services import add_product_image
from tests.backups.conftest import (
    backup_now,
    image_upload,
    run_command,
    table_fingerprints,
    upload_fingerprints,
)
from tests.backups.test_encryption import assert_untouched, working_copies

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def encrypting(backup_settings, key_a):
    """BACKUP_ENCRYPT_LOCAL on, to key A; listed before shop_data, so its images are made with it."""
    backup_settings.BACKUP_AGE_RECIPIENTS = key_a.public
    backup_settings.BACKUP_ENCRYPT_LOCAL = True
    return key_a


def store_files(backup_settings) -> dict[str, bytes]:
    root = backup_settings.BACKUP_PATH / "blobs"
    return {path.name: path.read_bytes() for path in sorted(root.glob("*/*"))} if root.is_dir() else {}


def image_bytes(media_root) -> dict[str, bytes]:
    """Every upload's bytes; a slice from the middle of each, as a search for plaintext would use."""
    return {name: (media_root / name).read_bytes() for name in upload_fingerprints(media_root)}


def assert_no_plaintext_in_store(backup_settings, media_root):
    stored = store_files(backup_settings)
    assert stored
    for name, data in image_bytes(media_root).items():
        probe = data[len(data) // 2 : len(data) // 2 + 32]
        assert len(probe) == 32, name
        assert not any(probe in blob for blob in stored.values()), name
    for sha256, blob in stored.items():
        assert blob.startswith(AGE_HEADER), sha256


def blob_uploads(client, backup_settings) -> dict[str, tuple]:
    """(time, ETag) of every blob object on S3: a new upload changes both."""
    listing = client.list_objects_v2(Bucket=backup_settings.BACKUP_S3_BUCKET, Prefix="shop/backups/blobs/")
    return {item["Key"]: (item["LastModified"], item["ETag"]) for item in listing.get("Contents", [])}


def flip_a_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def live_state(media_root):
    return table_fingerprints(), upload_fingerprints(media_root)


def test_plaintext_size_of_an_age_blob_comes_from_its_header_and_length(tmp_path, key_a, key_b):
    recipients = [key_a.identity.to_public(), key_b.identity.to_public()]
    for size in (0, 1, 65535, 65536, 65537, 3 * 65536 + 5):
        for count in (1, 2):
            path = tmp_path / f"{size}-{count}"
            path.write_bytes(crypto.encrypt_bytes(b"x" * size, recipients[:count]))
            assert blobs.inspect(path) == (True, size)
    (tmp_path / "plain").write_bytes(b"\x89PNG" + b"y" * 100)
    assert blobs.inspect(tmp_path / "plain") == (False, 104)
    (tmp_path / "cut").write_bytes(AGE_HEADER + b"-> X25519 abc\n")  # no header end: not a valid blob
    assert blobs.inspect(tmp_path / "cut") == (True, None)


def test_a_backup_leaves_no_plaintext_image_in_the_store_and_a_restore_brings_them_back(
    encrypting, shop_data, media_root, backup_settings
):
    live = live_state(media_root)
    set_id = backup_now()

    assert_no_plaintext_in_store(backup_settings, media_root)
    index = json.loads((local.set_dir(set_id) / INDEX_NAME).read_text())
    stored = store_files(backup_settings)
    assert set(index["blobs"]) == set(stored)  # named by the plaintext SHA-256, as before
    assert {sha256: hashlib.sha256(data).hexdigest() for sha256, data in stored.items()} == {
        sha256: record["stored_sha256"] for sha256, record in index["stored_blobs"].items()
    }
    for name, data in image_bytes(media_root).items():  # every image's name: its plaintext's SHA-256
        assert hashlib.sha256(data).hexdigest() in stored, name

    # A second set writes no blob again (the store's sizes are the ciphertext's, not the images').
    mtimes = {
        path.name: path.stat().st_mtime_ns for path in (backup_settings.BACKUP_PATH / "blobs").glob("*/*")
    }
    second = backup_now()
    assert {
        path.name: path.stat().st_mtime_ns for path in (backup_settings.BACKUP_PATH / "blobs").glob("*/*")
    } == mtimes
    second_index = json.loads((local.set_dir(second) / INDEX_NAME).read_text())
    assert second_index["stored_blobs"] == index["stored_blobs"]  # carried over, not read again

    ProductImage.objects.filter(product=shop_data[0]).delete()
    shutil.rmtree(media_root / "products")
    run_command("restore_backup", second, "--identity", str(encrypting.file), "--yes")

    assert live_state(media_root) == live
    assert working_copies(backup_settings) == []


def test_a_check_without_the_identity_finds_a_flipped_byte_in_an_encrypted_blob(
    encrypting, shop_data, media_root, backup_settings
):
    set_id = backup_now()
    lines = "\n".join(run_command("verify_backup", set_id))  # no identity: the ciphertext is checked
    assert "blobs: size and SHA-256 of the encrypted ones' ciphertext match the index" in lines
    sha256 = sorted(store_files(backup_settings))[0]
    flip_a_byte(blobs.blob_path(sha256))

    with pytest.raises(
        CommandError, match=rf"blob {blobs.blob_key(sha256)} \(encrypted\) has .* its content changed"
    ):
        run_command("verify_backup", set_id)
    with pytest.raises(CommandError, match=rf"blob {blobs.blob_key(sha256)} .*(damaged|cannot be decrypted)"):
        run_command("verify_backup", set_id, "--identity", str(encrypting.file))
    [listed] = json.loads("\n".join(run_command("list_backups", "--json")))
    assert listed["local_verified"] is False


def test_blobs_encrypted_before_encryption_was_turned_off_need_the_identity_and_nothing_changes(
    encrypting, shop_data, media_root, backup_settings, key_b, tmp_path
):
    backup_now()  # the blobs are written encrypted
    backup_settings.BACKUP_ENCRYPT_LOCAL = False
    backup_settings.BACKUP_AGE_RECIPIENTS = ""
    set_id = backup_now()  # a plaintext set whose blobs are the encrypted ones
    assert not (local.set_dir(set_id) / INDEX_NAME).exists()
    ProductImage.objects.filter(product=shop_data[1]).delete()
    (media_root / "products" / "added.txt").write_text("after the backup")
    live = live_state(media_root)

    for command in (("restore_backup", set_id, "--yes"), ("verify_backup", set_id, "--deep")):
        with pytest.raises(CommandError, match=r"blob blobs/.* is encrypted .* no identity was given"):
            run_command(*command)
        assert_untouched(live, media_root, backup_settings)
        with pytest.raises(CommandError, match="not one of its recipients"):
            run_command(*command, "--identity", str(key_b.file))
        assert_untouched(live, media_root, backup_settings)
        with pytest.raises(CommandError, match="cannot read the age identity file"):
            run_command(*command, "--identity", str(tmp_path / "nowhere.txt"))
        assert_untouched(live, media_root, backup_settings)

    run_command("restore_backup", set_id, "--identity", str(encrypting.file), "--yes")
    assert "products/added.txt" not in upload_fingerprints(media_root)


def test_a_mixed_store_restores_and_is_checked_without_the_identity(
    shop_data, media_root, backup_settings, key_a
):
    backup_now()  # plaintext blobs, from before encryption was turned on
    plaintext = set(store_files(backup_settings))
    backup_settings.BACKUP_AGE_RECIPIENTS = key_a.public
    backup_settings.BACKUP_ENCRYPT_LOCAL = True
    add_product_image(shop_data[2], image_upload("noise", size=(150, 100), noise=True))
    live = live_state(media_root)
    set_id = backup_now()

    stored = store_files(backup_settings)
    new = set(stored) - plaintext
    assert new
    assert all(stored[sha256].startswith(AGE_HEADER) for sha256 in new)
    assert not any(stored[sha256].startswith(AGE_HEADER) for sha256 in plaintext)  # left as they were
    index = json.loads((local.set_dir(set_id) / INDEX_NAME).read_text())
    assert set(index["stored_blobs"]) == new
    run_command("verify_backup", set_id)  # both kinds, no identity
    run_command("verify_backup", set_id, "--deep", "--identity", str(key_a.file))

    shutil.rmtree(media_root / "products")
    run_command("restore_backup", set_id, "--identity", str(key_a.file), "--yes")
    assert upload_fingerprints(media_root) == live[1]

    old = sorted(plaintext)[0]
    flip_a_byte(blobs.blob_path(old))
    with pytest.raises(
        CommandError, match=rf"blob {blobs.blob_key(old)} has SHA-256 .*: its content changed"
    ):
        run_command("verify_backup", set_id)


def test_an_encrypted_blob_goes_to_s3_as_it_is_and_a_restore_from_s3_alone_works(
    encrypting, shop_data, media_root, backup_settings, s3_bucket
):
    live = live_state(media_root)
    set_id = backup_now()

    stored = store_files(backup_settings)
    remote = {}
    for sha256 in stored:
        response = s3_bucket.get_object(
            Bucket=backup_settings.BACKUP_S3_BUCKET, Key=s3.blob_object_key(sha256)
        )
        remote[sha256] = response["Body"].read()
        assert response["Metadata"] == {"encrypted": "age"}
    assert remote == stored  # the local ciphertext, once: not encrypted a second time
    before = blob_uploads(s3_bucket, backup_settings)
    second = backup_now()
    assert second != set_id
    assert blob_uploads(s3_bucket, backup_settings) == before  # nothing uploaded again

    shutil.rmtree(backup_settings.BACKUP_PATH)  # the backup volume is lost: S3 alone
    shutil.rmtree(media_root / "products")
    run_command("restore_backup", second, "--source", "s3", "--identity", str(encrypting.file), "--yes")

    assert live_state(media_root) == live
    assert store_files(backup_settings) == stored  # fetched back as the same ciphertext


def test_a_blob_uploaded_plaintext_is_encrypted_when_fetched_into_a_store_that_encrypts(
    shop_data, media_root, backup_settings, s3_bucket, key_a
):
    set_id = backup_now()  # no recipients: plaintext locally and on S3
    shutil.rmtree(backup_settings.BACKUP_PATH)
    backup_settings.BACKUP_AGE_RECIPIENTS = key_a.public
    backup_settings.BACKUP_ENCRYPT_LOCAL = True
    live = live_state(media_root)
    shutil.rmtree(media_root / "products")

    # The store keeps no plaintext, so reading the fetched blobs back needs the identity too.
    with pytest.raises(CommandError, match=r"blob blobs/.* is encrypted .* no identity was given"):
        run_command("restore_backup", set_id, "--source", "s3", "--yes")
    assert upload_fingerprints(media_root) == {}  # nothing changed
    assert_no_plaintext_in_store(backup_settings, media_root)
    run_command("restore_backup", set_id, "--source", "s3", "--identity", str(key_a.file), "--yes")

    assert live_state(media_root) == live
    assert_no_plaintext_in_store(backup_settings, media_root)


def test_the_upload_time_archive_writes_encrypted_blobs(
    encrypting, make_product, media_root, s3_bucket, settings
):
    settings.BACKUP_ARCHIVE_IMAGES = True
    settings.IMAGE_ARCHIVE_MAX_RETRIES = 0
    image = add_product_image(make_product(), image_upload("teal"))
    image.refresh_from_db()

    assert image_archive.archive_status()["pending"] == 0
    assert_no_plaintext_in_store(settings, media_root)
    for name in image.stored_names():
        sha256 = hashlib.sha256((media_root / name).read_bytes()).hexdigest()
        local_blob = blobs.blob_path(sha256).read_bytes()
        remote = s3_bucket.get_object(Bucket=settings.BACKUP_S3_BUCKET, Key=s3.blob_object_key(sha256))
        assert remote["Body"].read() == local_blob  # sent as it is stored
        assert (
            blobs.blob_problem(sha256, (media_root / name).stat().st_size, keys=[encrypting.identity]) is None
        )

    # The next set finds them stored (no new blob) and records their ciphertext for keyless checks.
    before = store_files(settings)
    set_id = backup_now()
    assert store_files(settings) == before
    index = json.loads((local.set_dir(set_id) / INDEX_NAME).read_text())
    assert set(index["stored_blobs"]) == set(before)
    run_command("verify_backup", set_id)


def test_a_restore_to_a_time_brings_images_back_from_an_encrypted_store(
    encrypting, make_product, media_root, settings, key_b
):
    from tests.backups.test_pitr_images import leftovers, rows_media_names, the_image

    settings.BACKUP_ARCHIVE_IMAGES = True  # the upload-time archive stores the image's blob
    settings.IMAGE_ARCHIVE_MAX_RETRIES = 0
    add_product_image(make_product(), image_upload("olive"))
    names = rows_media_names()
    name, sha256 = the_image(names)
    assert blobs.blob_path(sha256).read_bytes().startswith(AGE_HEADER)
    shutil.rmtree(media_root / "products")

    with pytest.raises(crypto.IdentityRefused, match=r"is encrypted .* no identity was given"):
        images.bring_images(names)
    with pytest.raises(crypto.IdentityRefused, match="not one of its recipients"):
        images.bring_images(names, identity=str(key_b.file))
    assert not (media_root / name).exists()
    assert leftovers(media_root, settings) == []

    brought = images.bring_images(names, identity=str(encrypting.file))

    assert (brought.problems, brought.from_s3) == ([], 0)
    assert hashlib.sha256((media_root / name).read_bytes()).hexdigest() == sha256
    assert all((media_root / other).is_file() for other in names)


def test_a_media_bucket_downloaded_into_an_encrypted_store_is_restored_with_the_identity(
    encrypting, media_bucket, s3_bucket, shop_data, settings, django_capture_on_commit_callbacks, key_b
):
    settings.BACKUP_S3_ACCESS_KEY_ID = "another-key"  # no server-side copy: through the local store
    set_id = backup_now()
    index = json.loads((local.set_dir(set_id) / INDEX_NAME).read_text())
    assert index["blobs"]
    assert set(index["stored_blobs"]) == set(index["blobs"])  # every object downloaded, encrypted
    image = ProductImage.objects.filter(product=shop_data[1]).get()
    names = image.stored_names()
    originals = {name: media_bucket.read(name) for name in names}
    for name, data in originals.items():
        assert blobs.blob_path(hashlib.sha256(data).hexdigest()).read_bytes().startswith(AGE_HEADER), name
    with django_capture_on_commit_callbacks(execute=True):
        image.delete()
    before = media_bucket.names()

    with pytest.raises(CommandError, match="not one of them"):
        run_command("restore_backup", set_id, "--identity", str(key_b.file), "--yes")
    assert media_bucket.names() == before
    run_command("restore_backup", set_id, "--identity", str(encrypting.file), "--yes")

    for name in names:
        assert media_bucket.read(name) == originals[name]

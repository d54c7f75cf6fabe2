"""Encryption at rest with age: what leaves the machine is ciphertext, listing needs no key, and
a missing or wrong identity is refused before anything changes. S3 is a moto server."""

import contextlib
import hashlib
import json
import os
import shutil

import pytest
from django.core.management.base import CommandError
from django.db import connection
from pyrage import x25519

from shop.backups import local, s3, status
from shop.backups.crypto import AGE_HEADER, INDEX_NAME
from shop.backups.errors import OffsiteError
from shop.backups.manifest import DB_FILE, MANIFEST_NAME, UPLOADS_FILE
from shop.backups.progress import LoggingReporter
from shop.catalog.models import Product
from tests.backups.conftest import (
    backup_now,
    derived_databases,
    hidden_entries,
    run_command,
    table_fingerprints,
    upload_fingerprints,
)

pytestmark = pytest.mark.django_db(transaction=True)

MARKER = "PLAINTEXT-MARKER-3f9c1e"


class Key:
    """A fresh age key pair, its identity written to a file as age-keygen would."""

    def __init__(self, directory, name):
        self.identity = x25519.Identity.generate()
        self.public = str(self.identity.to_public())
        self.file = directory / f"{name}.txt"
        self.file.write_text(f"# created: for a test\n# public key: {self.public}\n{self.identity}\n")


@pytest.fixture
def marked_shop(shop_data, media_root):
    """The shop's data with a marker planted in the dump (a table comment, which pg_dump keeps
    uncompressed in its table of contents) and in the uploads (a plain file)."""
    with connection.cursor() as cursor:
        cursor.execute(f"COMMENT ON TABLE catalog_product IS '{MARKER}'")
    (media_root / "products" / "marker.txt").write_text(f"{MARKER}\n")
    return shop_data


def bucket_objects(s3_bucket, bucket) -> dict[str, bytes]:
    listing = s3_bucket.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {
        item["Key"]: s3_bucket.get_object(Bucket=bucket, Key=item["Key"])["Body"].read() for item in listing
    }


def change_live_data(shop_data, media_root):
    Product.objects.filter(pk=shop_data[0].pk).update(stock=1, price="0.01")
    (media_root / "products" / "new.txt").write_text("added after the backup")
    return table_fingerprints(), upload_fingerprints(media_root)


def working_copies(backup_settings) -> list[str]:
    """Fetched, decrypted or scratch copies of sets left on the backup volume."""
    prefixes = (local.FETCH_PREFIX, local.SCRATCH_PREFIX, local.INCOMPLETE_PREFIX)
    return [name for name in hidden_entries(backup_settings.BACKUP_PATH) if name.startswith(prefixes)]


def assert_untouched(live, media_root, backup_settings):
    assert (table_fingerprints(), upload_fingerprints(media_root)) == live
    assert derived_databases() == []
    assert hidden_entries(media_root) == []
    assert working_copies(backup_settings) == []


def test_encrypted_round_trip_through_s3(marked_shop, media_root, s3_bucket, backup_settings, key_a):
    backup_settings.BACKUP_AGE_RECIPIENTS = key_a.public
    rows_before, files_before = table_fingerprints(), upload_fingerprints(media_root)
    set_id = backup_now()

    # Locally (BACKUP_ENCRYPT_LOCAL off) the set is plaintext, markers and all: the control.
    for name in (DB_FILE, UPLOADS_FILE):
        assert MARKER.encode() in (local.set_dir(set_id) / name).read_bytes()
    assert not (local.set_dir(set_id) / INDEX_NAME).exists()
    # In the bucket, every file of the set is age ciphertext, but for the plaintext index.
    objects = bucket_objects(s3_bucket, backup_settings.BACKUP_S3_BUCKET)
    prefix = f"shop/backups/{set_id}/"
    assert sorted(key for key in objects if not key.startswith("shop/backups/blobs/")) == [
        prefix + name for name in sorted([DB_FILE, INDEX_NAME, MANIFEST_NAME, UPLOADS_FILE])
    ]
    assert len(objects) > 4  # and the uploads' blobs, encrypted too (checked below)
    for key, data in objects.items():
        assert MARKER.encode() not in data, key
        if not key.endswith(INDEX_NAME):
            assert data.startswith(AGE_HEADER), key
    index = json.loads(objects[prefix + INDEX_NAME])
    assert index["id"] == set_id
    assert index["encryption"] == {"scheme": "age", "recipients": [key_a.public]}
    assert "AGE-SECRET-KEY" not in objects[prefix + INDEX_NAME].decode()
    assert not any("sha256" in entry for entry in index["files"].values())  # no plaintext checksum

    # Listing and the presence check need no identity.
    local.delete_local_set(set_id)
    listing = "\n".join(run_command("list_backups", "--source", "s3"))
    assert set_id in listing
    assert "intact" in listing
    change_live_data(marked_shop, media_root)

    output = run_command("restore_backup", set_id, "--source", "s3", "--identity", str(key_a.file), "--yes")

    assert "Restore complete." in "\n".join(output)
    assert table_fingerprints() == rows_before
    assert upload_fingerprints(media_root) == files_before


@pytest.fixture
def only_on_s3_then_changed(shop_data, media_root, s3_bucket, backup_settings, key_a):
    """A set encrypted to key A, on S3 only, and live data that differs from it: (set ID, live)."""
    backup_settings.BACKUP_AGE_RECIPIENTS = key_a.public
    set_id = backup_now()
    local.delete_local_set(set_id)
    return set_id, change_live_data(shop_data, media_root)


def test_wrong_identity_is_refused_naming_the_recipients_and_nothing_changes(
    only_on_s3_then_changed, media_root, backup_settings, key_a, key_b
):
    set_id, live = only_on_s3_then_changed

    with pytest.raises(CommandError) as refused:
        run_command("restore_backup", set_id, "--source", "s3", "--identity", str(key_b.file), "--yes")

    message = str(refused.value)
    assert f"set {set_id} is encrypted with age, to recipient(s) {key_a.public}" in message
    assert f"the identity given is for {key_b.public}, not one of them" in message
    assert "Nothing was changed" in message
    assert "Traceback" not in message
    assert_untouched(live, media_root, backup_settings)


def test_missing_identity_is_refused_and_nothing_changes(
    only_on_s3_then_changed, media_root, backup_settings, key_a, tmp_path
):
    set_id, live = only_on_s3_then_changed

    with pytest.raises(
        CommandError, match=r"no identity was given: pass --identity FILE or set BACKUP_AGE_IDENTITY_FILE"
    ):
        run_command("restore_backup", set_id, "--source", "s3", "--yes")
    with pytest.raises(CommandError, match=rf"cannot read the age identity file {tmp_path}/nowhere.txt"):
        run_command(
            "restore_backup", set_id, "--source", "s3", "--identity", str(tmp_path / "nowhere.txt"), "--yes"
        )
    not_a_key = tmp_path / "not-a-key.txt"
    not_a_key.write_text(f"{key_a.public}\n")  # the public key by mistake
    with pytest.raises(CommandError, match="is not an age identity"):
        run_command("verify_backup", set_id, "--source", "s3", "--identity", str(not_a_key))

    assert_untouched(live, media_root, backup_settings)


def test_a_changed_byte_of_an_encrypted_object_is_refused(
    only_on_s3_then_changed, media_root, s3_bucket, backup_settings, key_a
):
    set_id, live = only_on_s3_then_changed
    backup_settings.BACKUP_AGE_IDENTITY_FILE = str(key_a.file)
    bucket, key = backup_settings.BACKUP_S3_BUCKET, f"shop/backups/{set_id}/{DB_FILE}"
    data = bytearray(s3_bucket.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0x01
    s3_bucket.put_object(Bucket=bucket, Key=key, Body=bytes(data))

    assert "DAMAGED" in "\n".join(run_command("list_backups", "--source", "s3"))
    with pytest.raises(CommandError, match=f"{DB_FILE} of set {set_id} on S3 is damaged"):
        run_command("restore_backup", set_id, "--source", "s3", "--yes")

    assert_untouched(live, media_root, backup_settings)


def test_local_encryption_off_keeps_local_sets_plaintext(shop_data, media_root, backup_settings, key_a):
    backup_settings.BACKUP_AGE_RECIPIENTS = key_a.public
    set_id = backup_now("--no-upload")

    assert json.loads((local.set_dir(set_id) / MANIFEST_NAME).read_text())["id"] == set_id
    assert not (local.set_dir(set_id) / INDEX_NAME).exists()
    assert "verified" in "\n".join(run_command("list_backups", "--source", "local"))
    run_command("verify_backup", set_id, "--deep")  # no identity needed


def test_local_encryption_on_encrypts_the_set_on_disk_too(
    marked_shop, media_root, s3_bucket, backup_settings, key_a
):
    backup_settings.BACKUP_AGE_RECIPIENTS = key_a.public
    backup_settings.BACKUP_ENCRYPT_LOCAL = True
    rows_before, files_before = table_fingerprints(), upload_fingerprints(media_root)
    set_id = backup_now()

    directory = local.set_dir(set_id)
    assert sorted(path.name for path in directory.iterdir()) == sorted(
        [DB_FILE, INDEX_NAME, MANIFEST_NAME, UPLOADS_FILE]
    )
    for name in (DB_FILE, MANIFEST_NAME, UPLOADS_FILE):
        data = (directory / name).read_bytes()
        assert data.startswith(AGE_HEADER), name
        assert MARKER.encode() not in data, name
    assert oct((directory / DB_FILE).stat().st_mode & 0o777) == "0o640"
    # Uploaded as they are stored: the bucket holds the same ciphertext.
    objects = bucket_objects(s3_bucket, backup_settings.BACKUP_S3_BUCKET)
    assert objects[f"shop/backups/{set_id}/{DB_FILE}"] == (directory / DB_FILE).read_bytes()
    # Listed without the identity, with its size.
    [listed] = json.loads("\n".join(run_command("list_backups", "--json")))
    assert (listed["id"], listed["contents"], listed["s3_intact"]) == (set_id, ["db", "uploads"], True)
    assert listed["size"] > 0

    # Without the identity, a check compares the stored (encrypted) bytes with the index; a test
    # restore needs the identity.
    keyless = "\n".join(run_command("verify_backup", set_id))
    assert f"{DB_FILE}: size and SHA-256 of its ciphertext match the index" in keyless
    with pytest.raises(CommandError, match="no identity was given"):
        run_command("verify_backup", set_id, "--deep")
    checked = "\n".join(run_command("verify_backup", set_id, "--deep", "--identity", str(key_a.file)))
    assert "restored into a scratch database" in checked
    change_live_data(marked_shop, media_root)
    run_command("restore_backup", set_id, "--identity", str(key_a.file), "--yes")

    assert table_fingerprints() == rows_before
    assert upload_fingerprints(media_root) == files_before
    assert working_copies(backup_settings) == []


def test_key_rotation_new_sets_use_the_new_key_old_sets_need_the_old_identity(
    shop_data, media_root, s3_bucket, backup_settings, key_a, key_b, tmp_path
):
    backup_settings.BACKUP_AGE_RECIPIENTS = key_a.public
    old_set = backup_now()
    rows_old = table_fingerprints()
    Product.objects.filter(pk=shop_data[1].pk).update(stock=7)
    backup_settings.BACKUP_AGE_RECIPIENTS = f"{key_b.public}"  # rotated
    new_set = backup_now()
    rows_new = table_fingerprints()
    for set_id in (old_set, new_set):
        local.delete_local_set(set_id)
    backup_settings.BACKUP_AGE_IDENTITY_FILE = str(key_b.file)  # the restore host has the new key

    with pytest.raises(CommandError) as refused:
        run_command("restore_backup", old_set, "--source", "s3", "--yes")
    assert f"to recipient(s) {key_a.public}; the identity given is for {key_b.public}" in str(refused.value)
    assert table_fingerprints() == rows_new

    run_command("restore_backup", old_set, "--source", "s3", "--identity", str(key_a.file), "--yes")
    assert table_fingerprints() == rows_old
    run_command("restore_backup", new_set, "--source", "s3", "--yes")  # BACKUP_AGE_IDENTITY_FILE: key B
    assert table_fingerprints() == rows_new
    # One identity file may hold both keys (as age-keygen output appended): it opens either set.
    both = tmp_path / "both.txt"
    both.write_text(key_a.file.read_text() + key_b.file.read_text())
    run_command("verify_backup", old_set, "--source", "s3", "--identity", str(both))


@pytest.mark.parametrize(
    ("recipients", "local_too", "error"),
    [
        ("age1notakey", False, "BACKUP_AGE_RECIPIENTS: 'age1notakey' is not an age public key"),
        ("AGE-SECRET-KEY-1QQQ", False, "holds an age identity .*, a private key: give only its public key"),
        ("", True, "BACKUP_ENCRYPT_LOCAL is on but BACKUP_AGE_RECIPIENTS is empty"),
    ],
)
def test_a_bad_encryption_setting_fails_the_backup_before_it_starts(
    shop_data, backup_settings, recipients, local_too, error
):
    backup_settings.BACKUP_AGE_RECIPIENTS = recipients
    backup_settings.BACKUP_ENCRYPT_LOCAL = local_too

    with pytest.raises(CommandError, match=error):
        backup_now("--no-upload")

    assert local.local_set_ids() == []


def test_several_recipients_separated_by_commas_or_spaces_each_open_the_set(
    shop_data, s3_bucket, backup_settings, key_a, key_b
):
    backup_settings.BACKUP_AGE_RECIPIENTS = f" {key_a.public},\n {key_b.public} "
    set_id = backup_now()
    local.delete_local_set(set_id)

    for key in (key_a, key_b):
        run_command("verify_backup", set_id, "--source", "s3", "--identity", str(key.file))


def test_retention_prunes_encrypted_sets_on_s3_without_the_identity(
    shop_data, s3_bucket, backup_settings, key_a
):
    backup_settings.BACKUP_AGE_RECIPIENTS = key_a.public
    backup_settings.BACKUP_S3_RETENTION_DAYS = 0  # every set but the newest intact one is old
    first = backup_now()
    second = backup_now()

    assert "last_failure" not in status.read_status()  # the prune read both indexes, no identity
    keys = bucket_objects(s3_bucket, backup_settings.BACKUP_S3_BUCKET)
    assert {key.split("/")[2] for key in keys} == {second, "blobs"}  # the blobs second names stay
    assert first in local.local_set_ids()  # local retention (7 days) kept it
    [remote] = [info for info in json.loads("\n".join(run_command("list_backups", "--json"))) if info["s3"]]
    assert (remote["id"], remote["s3_intact"]) == (second, True)


class AbortingReporter(LoggingReporter):
    """Once `after` bytes of a file were read for upload, every multipart upload in the bucket is
    aborted behind the uploader's back (as a lifecycle rule or another admin would)."""

    def __init__(self, s3_client, bucket: str, after: int):
        self.s3, self.bucket, self.after, self.aborted = s3_client, bucket, after, False

    @contextlib.contextmanager
    def track(self, label, total):
        done = 0

        def advance(n):
            nonlocal done
            done += n
            if done > self.after and not self.aborted:
                for upload in self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", []):
                    self.s3.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                self.aborted = True

        yield advance


def test_s3_failing_in_the_middle_of_an_encrypted_upload_is_an_offsite_error(
    shop_data, media_root, s3_bucket, backup_settings, key_a
):
    """pyrage hides the writer's exception in an EncryptError; S3's own error must come through,
    so the set is 'NOT OFFSITE' and the upload is retried, as without encryption."""
    backup_settings.BACKUP_AGE_RECIPIENTS = key_a.public
    (media_root / "products" / "large.bin").write_bytes(
        os.urandom(20 * 1024 * 1024)
    )  # 3 parts: the 2nd sent mid-stream
    set_id = backup_now("--no-upload")
    reporter = AbortingReporter(s3_bucket, backup_settings.BACKUP_S3_BUCKET, after=9 * 1024 * 1024)

    with pytest.raises(OffsiteError, match=f"uploading set {set_id} to S3 failed: S3 refused the request"):
        s3.upload_set(local.set_dir(set_id), local.local_summary(set_id), reporter)

    assert reporter.aborted
    assert s3.remote_set_ids(s3.client()) == []


def test_encrypted_blobs_are_fetched_decrypted_and_checked_when_the_local_store_lacks_them(
    shop_data, media_root, s3_bucket, backup_settings, key_a
):
    """The blobs a set names go up encrypted (only those S3 lacks) and come back decrypted."""
    backup_settings.BACKUP_AGE_RECIPIENTS = key_a.public
    before = (table_fingerprints(), upload_fingerprints(media_root))
    set_id = backup_now()
    objects = bucket_objects(s3_bucket, backup_settings.BACKUP_S3_BUCKET)
    blob_objects = {key: data for key, data in objects.items() if key.startswith("shop/backups/blobs/")}
    assert len(blob_objects) >= 10
    assert all(data.startswith(AGE_HEADER) for data in blob_objects.values())
    index = json.loads(objects[f"shop/backups/{set_id}/{INDEX_NAME}"])
    assert {key.rsplit("/", 1)[1] for key in blob_objects} == set(index["blobs"])  # for the sweep
    local.delete_local_set(set_id)
    shutil.rmtree(backup_settings.BACKUP_PATH / "blobs")
    change_live_data(shop_data, media_root)

    output = "\n".join(
        run_command("restore_backup", set_id, "--source", "s3", "--identity", str(key_a.file), "--yes")
    )

    assert f"fetching {len(blob_objects)} blob(s)" in output
    assert (table_fingerprints(), upload_fingerprints(media_root)) == before
    for blob in (backup_settings.BACKUP_PATH / "blobs").glob("*/*"):  # plaintext, named by content
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name

"""A damaged or hostile set, an unreachable S3 or a full disk: refused, and nothing changes."""

import hashlib
import io
import json
import re
import shutil
import tarfile

import pytest
from django.core.management.base import CommandError

from shop.backups.manifest import MANIFEST_NAME, UPLOADS_FILE
from shop.catalog.models import Product
from tests.backups.conftest import (
    backup_now,
    derived_databases,
    hidden_entries,
    run_command,
    table_fingerprints,
    tmpfs_mounted,
    upload_fingerprints,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def backed_up_then_changed(shop_data, media_root, backup_settings):
    """A good set, then live data that differs from it; returns (set dir, live fingerprints)."""
    set_id = backup_now("--no-upload")
    Product.objects.filter(pk=shop_data[0].pk).update(stock=1)
    (media_root / "products" / "new.txt").write_text("added after the backup")
    return backup_settings.BACKUP_PATH / set_id, (table_fingerprints(), upload_fingerprints(media_root))


def assert_untouched(live, media_root):
    assert (table_fingerprints(), upload_fingerprints(media_root)) == live
    assert derived_databases() == []
    assert not [p for p in media_root.parent.iterdir() if p.name != media_root.name and "uploads" in p.name]
    assert hidden_entries(media_root) == []  # no staging left inside MEDIA_ROOT either


def flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["db.dump", UPLOADS_FILE])
def test_one_flipped_byte_is_refused_before_anything_changes(backed_up_then_changed, media_root, name):
    set_dir, live = backed_up_then_changed
    flip_byte(set_dir / name, (set_dir / name).stat().st_size // 2)

    with pytest.raises(CommandError, match=f"corrupt: {name} has SHA-256"):
        run_command("restore_backup", "--latest", "--yes")
    assert_untouched(live, media_root)
    with pytest.raises(CommandError, match="corrupt"):
        run_command("verify_backup", "--latest")
    assert "CORRUPT" in "\n".join(run_command("list_backups"))


def test_a_truncated_archive_is_refused(backed_up_then_changed, media_root):
    set_dir, live = backed_up_then_changed
    archive = set_dir / UPLOADS_FILE
    with open(archive, "r+b") as f:
        f.truncate(archive.stat().st_size - 10_000)

    with pytest.raises(CommandError, match=f"{UPLOADS_FILE} has \\d+ bytes, the manifest says"):
        run_command("restore_backup", "--latest", "--yes")
    assert_untouched(live, media_root)


def test_a_set_without_manifest_is_not_a_set(backed_up_then_changed, media_root):
    set_dir, live = backed_up_then_changed
    (set_dir / MANIFEST_NAME).unlink()
    with pytest.raises(CommandError, match="no backup set"):
        run_command("restore_backup", "--latest", "--yes")
    with pytest.raises(CommandError, match="is missing: the set is incomplete"):
        run_command("restore_backup", set_dir.name, "--yes")
    assert_untouched(live, media_root)


def hostile_member(kind: str, tmp_path) -> tarfile.TarInfo:
    info = tarfile.TarInfo(
        {"dotdot": "products/../../evil", "absolute": str(tmp_path / "abs-evil")}.get(kind, "products/x")
    )
    if kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    elif kind == "device":
        info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    else:
        info.size = 5
    return info


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "device"])
def test_an_archive_that_escapes_is_refused(backed_up_then_changed, media_root, tmp_path, kind):
    """Even in a set whose checksums are consistent (made by a bug or an attacker)."""
    set_dir, live = backed_up_then_changed
    archive = set_dir / UPLOADS_FILE
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("products/fine.png")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"fine"))
        member = hostile_member(kind, tmp_path)
        tar.addfile(member, io.BytesIO(b"evil!") if member.isreg() else None)
    archive.write_bytes(out.getvalue())
    manifest = json.loads((set_dir / MANIFEST_NAME).read_text())
    manifest["files"][UPLOADS_FILE] = {
        "size": len(out.getvalue()),
        "sha256": hashlib.sha256(out.getvalue()).hexdigest(),
    }
    (set_dir / MANIFEST_NAME).write_text(json.dumps(manifest))

    with pytest.raises(CommandError, match="uploads archive holds"):
        run_command("restore_backup", "--latest", "--yes")
    assert_untouched(live, media_root)
    assert not list(tmp_path.rglob("*evil*"))
    with pytest.raises(CommandError, match="uploads archive holds"):
        run_command("verify_backup", "--latest", "--deep")


def test_deep_verify_compares_row_counts(backed_up_then_changed):
    set_dir, _ = backed_up_then_changed
    text = "\n".join(run_command("verify_backup", "--latest", "--deep"))
    assert "row counts of" in text
    assert derived_databases() == []  # the scratch database is gone

    manifest = json.loads((set_dir / MANIFEST_NAME).read_text())
    manifest["database"]["row_counts"]["public.orders_order"] += 1
    (set_dir / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(CommandError, match=r"public\.orders_order: 4 in the manifest, 3 restored"):
        run_command("verify_backup", "--latest", "--deep")
    with pytest.raises(CommandError, match="row counts differ"):
        run_command("restore_backup", "--latest", "--yes")
    assert derived_databases() == []


def test_restore_with_s3_unreachable_says_so_and_changes_nothing(
    shop_data, media_root, s3_bucket, backup_settings, closed_port
):
    set_id = backup_now()
    (backup_settings.BACKUP_PATH / set_id).rename(backup_settings.BACKUP_PATH / "moved-away")
    live = (table_fingerprints(), upload_fingerprints(media_root))
    backup_settings.BACKUP_S3_ENDPOINT_URL = f"http://127.0.0.1:{closed_port}"

    with pytest.raises(CommandError, match="cannot list s3://"):
        run_command("restore_backup", "--latest", "--yes")
    with pytest.raises(CommandError, match=f"set {set_id} from S3.*Nothing was changed"):
        run_command("restore_backup", set_id, "--yes")
    assert_untouched(live, media_root)
    assert not list(backup_settings.BACKUP_PATH.glob(".fetch-*"))


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MB tmpfs: a really full disk (ENOSPC from the kernel), not a simulated one."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    with tmpfs_mounted(mount_point, "1m"):
        yield mount_point


def big_upload(media_root, size=3 * 1024 * 1024):
    import os

    path = media_root / "products" / "big.bin"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(os.urandom(size))


def test_backup_onto_a_full_disk_fails_loudly_and_leaves_no_set(
    shop_data, media_root, backup_settings, tiny_disk, caplog
):
    backup_settings.BACKUP_PATH = tiny_disk / "backups"
    big_upload(media_root)

    with pytest.raises(CommandError, match="No space left on device"):
        run_command("backup_now", "--no-upload")
    assert sorted(
        p.name for p in backup_settings.BACKUP_PATH.iterdir() if not p.name.startswith(".status")
    ) == [
        "blobs",
        "status.json",
    ]
    assert [
        p for p in (backup_settings.BACKUP_PATH / "blobs").rglob("*") if p.is_file()
    ] == []  # none half-written
    assert "No backup sets" in "\n".join(run_command("list_backups"))
    status = json.loads((backup_settings.BACKUP_PATH / "status.json").read_text())
    assert "No space left" in status["last_failure"]["error"]
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []  # an expected failure: no traceback


def test_restore_onto_a_full_disk_is_refused_before_anything_changes(
    shop_data, settings, media_root, tiny_disk
):
    big_upload(media_root)
    backup_now("--no-upload")
    small_media = tiny_disk / "uploads"
    small_media.mkdir()
    (small_media / "keep.txt").write_text("live file")
    settings.MEDIA_ROOT = small_media
    rows = table_fingerprints()

    with pytest.raises(CommandError, match="not enough free disk in"):
        run_command("restore_backup", "--latest", "--yes")
    assert upload_fingerprints(small_media) == {"keep.txt": hashlib.sha256(b"live file").hexdigest()}
    assert table_fingerprints() == rows
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["uploads"]


def rewrite_archive(set_dir, data: bytes) -> None:
    """Replace the uploads archive and make the manifest agree, as a buggy writer would."""
    (set_dir / UPLOADS_FILE).write_bytes(data)
    manifest = json.loads((set_dir / MANIFEST_NAME).read_text())
    manifest["files"][UPLOADS_FILE] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (set_dir / MANIFEST_NAME).write_text(json.dumps(manifest))


def test_a_truncated_archive_with_a_matching_manifest_is_refused_too(backed_up_then_changed, media_root):
    set_dir, live = backed_up_then_changed
    data = (set_dir / UPLOADS_FILE).read_bytes()
    rewrite_archive(set_dir, data[: len(data) // 2])

    with pytest.raises(CommandError, match="uploads archive"):
        run_command("restore_backup", "--latest", "--yes")
    assert_untouched(live, media_root)


def test_an_upload_named_in_the_dump_but_missing_on_disk_is_recorded(shop_data, media_root, backup_settings):
    image = shop_data[1].images.get()
    (media_root / image.image.name).unlink()  # lost behind the shop's back

    set_id = backup_now("--no-upload")

    manifest = json.loads((backup_settings.BACKUP_PATH / set_id / MANIFEST_NAME).read_text())
    assert manifest["uploads"]["referenced_but_missing"] == [image.image.name]


def test_s3_down_does_not_block_listing_or_restoring_local_sets(
    shop_data, media_root, s3_bucket, backup_settings, closed_port
):
    set_id = backup_now()
    files = upload_fingerprints(media_root)
    sorted(media_root.rglob("*.png"))[0].unlink()
    backup_settings.BACKUP_S3_ENDPOINT_URL = f"http://127.0.0.1:{closed_port}"

    listing = "\n".join(run_command("list_backups"))
    assert set_id in listing
    assert "S3 could not be listed" in listing
    run_command("restore_backup", "--latest", "--yes", "--only", "uploads")
    assert upload_fingerprints(media_root) == files


def claim_a_newer_pg_dump(manifest: dict) -> dict:
    manifest["database"]["pg_dump_version"] = "99.0"
    manifest["database"]["server_version"] = "99.0"
    return manifest


def test_a_dump_newer_than_pg_restore_is_refused_before_anything_changes(backed_up_then_changed, media_root):
    """A local set: its manifest carries no checksum of its own, so editing it is enough."""
    set_dir, live = backed_up_then_changed
    manifest = claim_a_newer_pg_dump(json.loads((set_dir / MANIFEST_NAME).read_text()))
    (set_dir / MANIFEST_NAME).write_text(json.dumps(manifest))

    with pytest.raises(CommandError) as refused:
        run_command("restore_backup", "--latest", "--yes")

    assert re.search(r"pg_restore [\d.]+ cannot read a dump made by pg_dump 99\.0", str(refused.value))
    assert "Nothing was changed" in str(refused.value)
    assert_untouched(live, media_root)


def test_a_newer_dump_on_s3_is_refused_too(shop_data, media_root, s3_bucket, backup_settings):
    """A set on S3: its manifest must match the SHA-256 stored beside it, so the edited manifest
    is re-signed as an upload would sign it, and the refusal comes from the version check."""
    set_id = backup_now()
    shutil.rmtree(backup_settings.BACKUP_PATH / set_id)
    key = f"{backup_settings.BACKUP_S3_PREFIX}/{set_id}/{MANIFEST_NAME}"
    body = s3_bucket.get_object(Bucket=backup_settings.BACKUP_S3_BUCKET, Key=key)["Body"].read()
    edited = json.dumps(claim_a_newer_pg_dump(json.loads(body))).encode()
    s3_bucket.put_object(
        Bucket=backup_settings.BACKUP_S3_BUCKET,
        Key=key,
        Body=edited,
        Metadata={"sha256": hashlib.sha256(edited).hexdigest()},
    )
    live = (table_fingerprints(), upload_fingerprints(media_root))

    with pytest.raises(CommandError, match=r"cannot read a dump made by pg_dump 99\.0.*Nothing was changed"):
        run_command("restore_backup", set_id, "--source", "s3", "--yes")

    assert_untouched(live, media_root)
    assert not list(backup_settings.BACKUP_PATH.glob(".fetch-*"))

"""Backup and restore give back every row and every upload byte for byte."""

import os
import shutil

import pytest
from django.core.management.base import CommandError
from django.db import connections
from psycopg import sql

from shop.backups.database import live_database_name, maintenance_connection
from shop.catalog.models import Product
from shop.orders.models import Order
from tests.backups.conftest import (
    backup_now,
    bind_mounted,
    hidden_entries,
    run_command,
    table_fingerprints,
    tmpfs_mounted,
    upload_fingerprints,
)

pytestmark = pytest.mark.django_db(transaction=True)


def damage_the_shop(media_root, products):
    """Change and delete data and files, as a bad deploy or a careless admin would."""
    Product.objects.filter(pk=products[0].pk).update(price="0.01", stock=0)
    Order.objects.first().delete()
    Product.objects.create(
        category=products[0].category, name="Stray", slug="stray", sku="STRAY", price="1.00"
    )
    victims = sorted(media_root.rglob("*.png"))[:2]
    for path in victims:
        path.unlink()
    (media_root / "products" / "stray.txt").write_text("not from the backup")


def test_round_trip_restores_every_row_and_upload(shop_data, media_root):
    rows_before, files_before = table_fingerprints(), upload_fingerprints(media_root)
    assert len(files_before) >= 10  # originals and thumbnails
    set_id = backup_now("--no-upload")

    damage_the_shop(media_root, shop_data)
    assert table_fingerprints() != rows_before
    assert upload_fingerprints(media_root) != files_before

    output = run_command("restore_backup", "--latest", "--yes")

    assert table_fingerprints() == rows_before
    assert upload_fingerprints(media_root) == files_before
    text = "\n".join(output)
    assert f"from set {set_id}" in text
    assert "To roll back" in text
    # The previous database and uploads are kept for rollback, under the names printed.
    with maintenance_connection() as conn:
        kept = [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s",
                [f"{live_database_name()}__pre_restore_%"],
            )
        ]
    assert len(kept) == 1
    assert kept[0] in text
    previous_dirs = list(media_root.glob(".pre-restore-*"))
    assert len(previous_dirs) == 1
    assert previous_dirs[0].name in text
    assert (previous_dirs[0] / "products" / "stray.txt").is_file()
    assert hidden_entries(media_root) == [previous_dirs[0].name]  # no staging left
    assert [p.name for p in media_root.parent.iterdir() if "uploads" in p.name] == ["uploads"]  # none beside


def test_restore_from_s3_when_the_local_copy_is_gone(shop_data, media_root, s3_bucket, backup_settings):
    rows_before, files_before = table_fingerprints(), upload_fingerprints(media_root)
    set_id = backup_now()
    listing = "\n".join(run_command("list_backups", "--source", "s3"))
    assert set_id in listing
    assert "intact" in listing

    shutil.rmtree(backup_settings.BACKUP_PATH / set_id)
    damage_the_shop(media_root, shop_data)
    run_command("restore_backup", "--latest", "--yes")

    assert table_fingerprints() == rows_before
    assert upload_fingerprints(media_root) == files_before
    # The fetched copy was temporary.
    assert not list(backup_settings.BACKUP_PATH.glob(".fetch-*"))


def test_only_uploads_leaves_the_database_alone(shop_data, media_root):
    files_before = upload_fingerprints(media_root)
    backup_now("--no-upload", "--only", "uploads")
    Product.objects.filter(pk=shop_data[0].pk).update(stock=7)
    sorted(media_root.rglob("*.png"))[0].unlink()

    run_command("restore_backup", "--latest", "--yes", "--only", "uploads")

    assert upload_fingerprints(media_root) == files_before
    assert Product.objects.get(pk=shop_data[0].pk).stock == 7
    with pytest.raises(CommandError, match="holds uploads, not db"):
        run_command("restore_backup", "--latest", "--yes", "--only", "db")


def test_dry_run_prints_the_plan_and_changes_nothing(shop_data, media_root):
    backup_now("--no-upload")
    Product.objects.filter(pk=shop_data[0].pk).update(stock=3)
    rows, files = table_fingerprints(), upload_fingerprints(media_root)

    text = "\n".join(run_command("restore_backup", "--latest", "--dry-run"))

    for expected in (
        "Database:",
        "Versions: set dumped by pg_dump",
        "Migrations: the set and the code agree",
        "free in",
        "Uploads:",
        "Dry run: nothing was changed",
    ):
        assert expected in text
    assert table_fingerprints() == rows
    assert upload_fingerprints(media_root) == files


@pytest.fixture(params=["tmpfs", "bind"])
def media_root_mount(request, media_root, tmp_path):
    """MEDIA_ROOT as a mount point of its own, like a Docker volume (tmpfs) or a Docker bind mount
    of a host directory (a bind mount from the same filesystem, which os.path.ismount misses).
    Either way it cannot be renamed, and nothing can be assumed writable beside it."""
    if request.param == "tmpfs":
        mount = tmpfs_mounted(media_root, "64m")
    else:
        host_dir = tmp_path / "host-uploads"
        host_dir.mkdir()
        mount = bind_mounted(host_dir, media_root)
    with mount:
        if request.param == "bind":
            assert not os.path.ismount(media_root)  # the case the old code got wrong
        parent_mode = media_root.parent.stat().st_mode
        media_root.parent.chmod(0o555)  # beside it is read-only, as a container's root file system
        try:
            yield media_root
        finally:
            media_root.parent.chmod(parent_mode)


def test_full_restore_into_a_mount_point(media_root_mount, shop_data, backup_settings):
    rows_before, files_before = table_fingerprints(), upload_fingerprints(media_root_mount)
    set_id = backup_now("--no-upload")
    damage_the_shop(media_root_mount, shop_data)

    text = "\n".join(run_command("restore_backup", "--latest", "--yes"))

    assert table_fingerprints() == rows_before
    assert upload_fingerprints(media_root_mount) == files_before
    assert os.path.samefile(media_root_mount, media_root_mount)  # still there, still the mount
    kept = list(media_root_mount.glob(".pre-restore-*"))
    assert len(kept) == 1
    assert hidden_entries(media_root_mount) == [kept[0].name]
    assert (kept[0] / "products" / "stray.txt").is_file()
    assert f"mv -- {kept[0].name}/* ." in text  # the rollback moves entries, never the mount point
    # The kept copy is hidden from the next backup.
    second = backup_now("--no-upload", "--only", "uploads")
    assert f"{len(files_before)} files" in "\n".join(run_command("verify_backup", second, "--deep"))
    assert second != set_id


def test_restore_onto_a_server_that_lost_the_database(shop_data, media_root):
    """The worst day: the shop database is gone (here: moved aside), the backup brings it back."""
    rows = table_fingerprints()
    backup_now("--no-upload", "--only", "db")
    connections.close_all()
    live = live_database_name()
    with maintenance_connection() as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(live), sql.Identifier(f"{live}__lost")
            )
        )

    text = "\n".join(run_command("restore_backup", "--latest", "--yes"))

    assert "nothing to roll back to" in text
    assert table_fingerprints() == rows


def test_a_malformed_set_id_is_refused(shop_data):
    with pytest.raises(CommandError, match="is not a backup set ID"):
        run_command("restore_backup", "../../etc", "--yes")


def test_without_yes_it_asks_and_a_no_changes_nothing(shop_data, media_root, monkeypatch):
    backup_now("--no-upload")
    Product.objects.filter(pk=shop_data[0].pk).update(stock=2)
    rows, files = table_fingerprints(), upload_fingerprints(media_root)
    questions = []
    monkeypatch.setattr("builtins.input", lambda prompt: questions.append(prompt) or "no")

    assert "Cancelled: nothing was changed." in run_command("restore_backup", "--latest")

    assert "Type 'yes'" in questions[0]
    assert (table_fingerprints(), upload_fingerprints(media_root)) == (rows, files)


def test_leftover_staging_databases_are_dropped_but_rollback_copies_kept(shop_data):
    backup_now("--no-upload", "--only", "db")
    live = live_database_name()
    leftovers = {f"{live}__restoring_20260101T000000Z", f"{live}__verify_20260101T000000Z"}
    kept = f"{live}__pre_restore_20260101T000000Z"
    with maintenance_connection() as conn:
        for name in [*leftovers, kept]:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    run_command("verify_backup", "--latest")

    with maintenance_connection() as conn:
        existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
    assert not leftovers & existing
    assert kept in existing


def test_symlinks_in_media_root_are_skipped_so_the_set_stays_restorable(shop_data, media_root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not an upload")
    (media_root / "linked-dir").symlink_to(outside)
    (media_root / "products" / "linked.png").symlink_to(outside / "secret.txt")
    files = {name: digest for name, digest in upload_fingerprints(media_root).items() if "linked" not in name}

    backup_now("--no-upload", "--only", "uploads")
    run_command("restore_backup", "--latest", "--yes")

    assert upload_fingerprints(media_root) == files
    assert not (media_root / "linked-dir").exists()

"""The dump's compression: zstd where pg_dump has it (16+), gzip level 1 before; a real dump
and restore with whatever pg_dump this machine has."""

import subprocess

import pytest
from django.core.management.base import CommandError

from shop.backups import local
from shop.backups.database import dump_compression, tool_version
from shop.backups.errors import BackupError
from shop.backups.manifest import DB_FILE
from tests.backups.conftest import backup_now, run_command, table_fingerprints, upload_fingerprints


@pytest.mark.parametrize(
    ("version", "setting", "expected"),
    [
        ("15.20", "auto", "1"),  # gzip level 1 (faster than the default 6): 15 has no zstd
        ("16.4", "auto", "zstd:1"),
        ("17.12", "auto", "zstd:1"),
        ("17.12", "default", None),
        ("17.12", "", None),
        ("17.12", "zstd:9", "zstd:9"),
        ("17.12", "GZIP:6", "gzip:6"),
        ("17.12", "none", "none"),
        ("15.20", "6", "6"),  # a gzip level is all 15 takes
        ("15.20", "0", "0"),
    ],
)
def test_the_compression_argument_follows_the_pg_dump_version(version, setting, expected):
    assert dump_compression(version, setting) == expected


@pytest.mark.parametrize("setting", ["zstd:3", "lz4", "none", "gzip:6"])
def test_a_method_an_old_pg_dump_lacks_is_refused_with_what_to_do(setting):
    with pytest.raises(BackupError, match=rf"BACKUP_DUMP_COMPRESSION={setting} needs pg_dump 16 or later"):
        dump_compression("15.20", setting)


def dump_header_compression(set_id: str) -> str:
    listing = subprocess.run(
        ["pg_restore", "--list", str(local.set_dir(set_id) / DB_FILE)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return next(line.split(":", 1)[1].strip() for line in listing.splitlines() if "Compression:" in line)


pytestmark_db = pytest.mark.django_db(transaction=True)


@pytestmark_db
def test_the_auto_dump_restores_and_says_how_it_was_compressed(shop_data, media_root, settings):
    settings.BACKUP_DUMP_COMPRESSION = "auto"
    pg_dump = tool_version("pg_dump")
    rows, files = table_fingerprints(), upload_fingerprints(media_root)

    set_id = backup_now("--no-upload")

    manifest = local.local_manifest(set_id)
    if int(pg_dump.split(".")[0]) >= 16:
        assert manifest.database.dump_compression == "zstd:1"
        assert dump_header_compression(set_id) == "zstd"
    else:
        assert manifest.database.dump_compression == "1"
        assert dump_header_compression(set_id) == "1"  # gzip, level 1
    shop_data[0].delete()
    run_command("restore_backup", set_id, "--yes")
    assert (table_fingerprints(), upload_fingerprints(media_root)) == (rows, files)


@pytestmark_db
def test_an_explicit_level_reaches_pg_dump(shop_data, settings):
    settings.BACKUP_DUMP_COMPRESSION = "1" if int(tool_version("pg_dump").split(".")[0]) < 16 else "gzip:1"

    set_id = backup_now("--no-upload")

    assert dump_header_compression(set_id) in ("1", "gzip")
    assert "is good" in run_command("verify_backup", set_id, "--deep")[-1]


@pytestmark_db
def test_an_unsupported_method_fails_the_backup_before_anything_is_written(shop_data, settings):
    if int(tool_version("pg_dump").split(".")[0]) >= 16:
        pytest.skip("this pg_dump has every method")
    settings.BACKUP_DUMP_COMPRESSION = "zstd:3"

    with pytest.raises(CommandError, match="needs pg_dump 16 or later"):
        run_command("backup_now", "--no-upload")
    assert local.local_set_ids() == []

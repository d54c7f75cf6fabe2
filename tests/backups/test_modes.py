"""A backup set holds every customer's data: private to its owner (and group), whatever the umask."""

import os
import stat

import pytest

from tests.backups.conftest import backup_now, run_command

pytestmark = pytest.mark.django_db(transaction=True)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask():
    previous = os.umask(0o000)  # what would make every file world-writable, let alone readable
    yield
    os.umask(previous)


def test_backup_sets_are_private_whatever_the_umask(shop_data, backup_settings, permissive_umask):
    root = backup_settings.BACKUP_PATH
    assert not root.exists()  # the backup creates it

    set_id = backup_now("--no-upload")
    run_command("verify_backup", set_id, "--deep")  # its scratch copies, then status again

    assert mode(root) == 0o750
    assert mode(root / set_id) == 0o750
    files = sorted(path.name for path in (root / set_id).iterdir())
    assert files == ["db.dump", "manifest.json", "uploads.tar"]
    for name in files:
        assert mode(root / set_id / name) == 0o640, name
    for name in ("status.json", ".status.lock"):
        assert mode(root / name) == 0o640, name
    assert [
        entry.name for entry in root.iterdir() if entry.name.startswith((".scratch", ".incomplete"))
    ] == []


def test_an_existing_backup_directory_we_own_is_tightened(shop_data, backup_settings, permissive_umask):
    root = backup_settings.BACKUP_PATH
    root.mkdir(mode=0o777)
    os.chmod(root, 0o777)  # noqa: S103 - the careless setup being tested

    set_id = backup_now("--no-upload")

    assert mode(root) == 0o750
    assert mode(root / set_id / "db.dump") == 0o640


def test_a_set_fetched_from_s3_is_private_too(
    shop_data, backup_settings, s3_bucket, permissive_umask, monkeypatch
):
    from shop.backups import staging

    set_id = backup_now()
    seen = {}
    real_verify = staging.verify_files

    def verify_files(directory, set_manifest, report, **options):  # a spy: the fetched copy as it is checked
        seen.update({path.name: mode(path) for path in [directory, *directory.iterdir()]})
        return real_verify(directory, set_manifest, report, **options)

    monkeypatch.setattr("shop.backups.verify.verify_files", verify_files)
    run_command("verify_backup", set_id, "--source", "s3")

    assert seen.pop(f".fetch-{set_id}") == 0o750
    assert seen == {"db.dump": 0o640, "manifest.json": 0o640, "uploads.tar": 0o640}

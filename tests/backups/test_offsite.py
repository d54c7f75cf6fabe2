"""Offsite copies: none configured is a warning, a configured one failing is an error (exit 1),
and expected failures are one clear paragraph, never a traceback. S3 is a moto server."""

import json
from subprocess import PIPE

import pytest
from django.core.management.base import CommandError

from shop.backups import local, status
from tests.backups.conftest import backup_now, manage, run_command

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def no_aws_credentials(monkeypatch, tmp_path):
    """Nothing for boto3 to find: no keys in the environment or files, no instance metadata
    lookup (which would leave loopback)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))


@pytest.fixture
def bucket_without_credentials(backup_settings, s3_endpoint, no_aws_credentials):
    """What the old default .env gave: a bucket name, and nothing else."""
    backup_settings.BACKUP_S3_BUCKET = "shop-backups"
    backup_settings.BACKUP_S3_ENDPOINT_URL = s3_endpoint
    backup_settings.BACKUP_S3_ACCESS_KEY_ID = None
    backup_settings.BACKUP_S3_SECRET_ACCESS_KEY = None
    return backup_settings


def no_tracebacks(caplog):
    return [record.getMessage() for record in caplog.records if record.exc_info]


def test_no_offsite_target_is_local_only_with_a_warning_not_a_failure(
    shop_data, client, admin_client, caplog
):
    output = "\n".join(run_command("backup_now"))

    [set_id] = local.local_set_ids()
    assert output.splitlines()[-1] == set_id
    assert "Offsite: not configured" in output
    assert "last_failure" not in status.read_status()
    backup = client.get("/readyz").json()["backup"]
    assert backup["status"] == "ok"
    assert backup["offsite"] == "not configured"
    assert any(warning.startswith("offsite: not configured") for warning in backup["warnings"])
    assert "Offsite: not configured" in admin_client.get("/admin/backups/backupset/").content.decode()
    assert no_tracebacks(caplog) == []


def test_no_upload_is_not_a_failure_even_with_a_bucket_and_no_credentials(
    shop_data, bucket_without_credentials, caplog
):
    output = run_command("backup_now", "--no-upload")

    assert output[-1] in local.local_set_ids()
    assert "local only (--no-upload)" in "\n".join(output)
    assert "last_failure" not in status.read_status()  # S3 is not touched, not even to prune it
    assert no_tracebacks(caplog) == []


def test_missing_credentials_fail_the_command_in_one_paragraph_and_keep_the_set(
    shop_data, bucket_without_credentials, s3_endpoint, tmp_path
):
    """In a child process, as cron runs it: exit 1, the set ID on stdout, one clear paragraph
    on stderr, no traceback."""
    env = {
        "BACKUP_S3_BUCKET": "shop-backups",
        "BACKUP_S3_ENDPOINT_URL": s3_endpoint,
        "BACKUP_S3_ACCESS_KEY_ID": "",
        "BACKUP_S3_SECRET_ACCESS_KEY": "",
        "LOG_DIR": str(tmp_path / "logs"),
    }
    child = manage("backup_now", env_overrides=env, stdout=PIPE, stderr=PIPE)
    out, err = (stream.decode() for stream in child.communicate(timeout=120))

    assert child.returncode == 1, err
    [set_id] = local.local_set_ids()
    assert out.splitlines()[-1] == set_id
    assert "Traceback" not in err
    assert f"set {set_id} was written and kept in" in err
    assert "NOT offsite" in err
    assert "no S3 credentials" in err
    assert "BACKUP_S3_ACCESS_KEY_ID" in err
    record = status.read_status()["sets"][set_id]
    assert record["local_verified"] is True
    assert record["offsite"]["verified"] is False


def test_s3_unreachable_fails_the_command_keeps_the_set_and_warns_in_readyz(
    shop_data, s3_bucket, backup_settings, closed_port, client, caplog
):
    backup_settings.BACKUP_S3_ENDPOINT_URL = f"http://127.0.0.1:{closed_port}"

    with pytest.raises(CommandError, match=r"set \d{8}T\d{6}Z was written and kept in .* NOT offsite: "):
        run_command("backup_now")

    [set_id] = local.local_set_ids()
    assert status.read_status()["sets"][set_id]["local_verified"] is True
    assert status.read_status()["last_failure"]["stage"] == "upload"
    backup = client.get("/readyz").json()["backup"]
    assert client.get("/readyz").status_code == 200
    # The set is good, so the shop stays ready; the failed upload is an alert (mailed, shown).
    assert (backup["status"], backup["offsite"]) == ("failing", "not offsite")
    assert "could not be reached" in backup["warnings"][0]
    assert "could not be reached" in backup["alerts"]["upload"]
    assert no_tracebacks(caplog) == []


def test_a_configured_target_that_works_is_reported_ok(shop_data, s3_bucket, client):
    set_id = backup_now()
    backup = client.get("/readyz").json()["backup"]
    assert (backup["newest_id"], backup["offsite"], backup["warnings"]) == (set_id, "ok", [])
    assert json.loads("\n".join(run_command("list_backups", "--json")))[0]["offsite_verified"] is True

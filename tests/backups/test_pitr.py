"""Point-in-time recovery's plain parts: pgBackRest's configuration, the --to argument, the
crash-safe directory switch, and bringing the restored rows' images back from the blob store.
The whole restore runs against real pgBackRest and PostgreSQL in tests/stack/test_runner_pitr.py."""

import hashlib
import io
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from shop.backups import blobs
from shop.backups.pitr import config, images, monitor, repository, restore, switch
from shop.backups.pitr.pgbackrest import PitrError


def pitr_config(**environ) -> config.PitrConfig:
    return config.PitrConfig.from_environ(
        environ,
        pg_data=Path("/data/postgres"),
        pg_port=5433,
        pg_socket_dir=Path("/run/pg"),
        run_dir=Path("/run/pgbackrest"),
        log_dir=Path("/logs/pgbackrest"),
        backup_path=Path("/backups"),
    )


def conf(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_config_repo1_on_the_backup_volume_with_retention_in_step_with_the_dump_sets():
    text = config.config_text(pitr_config(BACKUP_LOCAL_RETENTION_DAYS="9", POSTGRES_USER="owner"))
    values = conf(text)
    assert values["repo1-path"] == "/backups/pgbackrest"
    assert values["repo1-retention-full-type"] == "time"
    assert values["repo1-retention-full"] == "9"
    assert values["archive-push-queue-max"] == "1GiB"
    assert values["pg1-user"] == "owner"
    assert values["pg1-socket-path"] == "/run/pg"
    assert "repo2-type" not in values
    assert "[shop]" in text


def test_config_repo2_on_s3_over_https_with_path_style_and_optional_tls_check():
    values = conf(
        config.config_text(
            pitr_config(
                BACKUP_S3_BUCKET="bucket",
                BACKUP_S3_PREFIX="/shop/",
                BACKUP_S3_ENDPOINT_URL="https://127.0.0.1:9443",
                BACKUP_S3_ACCESS_KEY_ID="key",
                BACKUP_S3_SECRET_ACCESS_KEY="secret",
                BACKUP_S3_RETENTION_DAYS="40",
                PITR_S3_VERIFY_TLS="false",
            )
        )
    )
    assert values["repo2-type"] == "s3"
    assert values["repo2-path"] == "/shop/pgbackrest"
    assert values["repo2-s3-endpoint"] == "127.0.0.1"
    assert values["repo2-storage-port"] == "9443"
    assert values["repo2-s3-uri-style"] == "path"
    assert values["repo2-storage-verify-tls"] == "n"
    assert values["repo2-retention-full"] == "40"


def test_config_repo2_verifies_tls_against_a_ca_file_when_one_is_given():
    with_ca = conf(
        config.config_text(
            pitr_config(
                BACKUP_S3_BUCKET="bucket",
                BACKUP_S3_ENDPOINT_URL="https://s3.lan:9443",
                PITR_S3_CA_FILE="/etc/pgbackrest/tls/s3-ca.crt",
            )
        )
    )
    assert with_ca["repo2-storage-ca-file"] == "/etc/pgbackrest/tls/s3-ca.crt"
    assert "repo2-storage-verify-tls" not in with_ca
    without = conf(config.config_text(pitr_config(BACKUP_S3_BUCKET="bucket")))
    assert "repo2-storage-ca-file" not in without


def test_physical_backups_go_to_repo2_only_where_the_configuration_has_it():
    assert config.repositories("") == [1]
    assert config.repositories("bucket") == [1, 2]  # AWS
    assert config.repositories("bucket", "https://s3.lan:9443") == [1, 2]
    # compose's development MinIO: the repository host leaves repo2 out (ops/entrypoint.sh)
    assert config.repositories("bucket", "http://minio:9000") == [1]


def test_config_archive_push_gives_up_on_s3_soon_so_repo1_goes_on():
    text = config.config_text(
        pitr_config(BACKUP_S3_BUCKET="bucket", BACKUP_S3_ENDPOINT_URL="https://s3:9443")
    )
    assert text.endswith(f"\n[shop:archive-push]\nio-timeout={config.ARCHIVE_PUSH_IO_TIMEOUT}\n")
    assert "io-timeout" not in config.config_text(pitr_config())


def test_config_refuses_a_plain_http_s3_endpoint():
    with pytest.raises(ValueError, match="HTTPS only"):
        pitr_config(BACKUP_S3_BUCKET="bucket", BACKUP_S3_ENDPOINT_URL="http://127.0.0.1:9000")


def test_the_failed_push_names_the_repository_from_pgbackrests_spool(settings, tmp_path):
    """With two repositories pg_stat_archiver cannot say which failed: pgBackRest's async status
    file can (the format pgBackRest 2.45 writes: the code, then the message)."""
    run_dir = tmp_path / "run"
    settings.PITR_PGBACKREST_CONFIG = tmp_path / "pgbackrest.conf"
    assert monitor.push_error() == ""  # no configuration readable here: nothing to say
    text = config.config_text(replace(pitr_config(), run_dir=run_dir))
    settings.PITR_PGBACKREST_CONFIG.write_text(text)
    out = run_dir / "spool" / "archive" / config.STANZA / "out"
    out.mkdir(parents=True)
    assert monitor.push_error() == ""
    (out / "000000010000000000000007.ok").write_text("")
    (out / "000000010000000000000008.error").write_text("103\nrepo2: [HostConnectError] unable to connect\n")
    (out / "000000010000000000000009.error").write_text("103\nrepo2: [HostConnectError] refused\n")
    assert monitor.push_error() == "000000010000000000000009: repo2: [HostConnectError] refused"
    state = monitor.ArchiveState(None, "", None, "", 1, 2, 30.0, push_error=monitor.push_error())
    assert monitor.archive_summary(state).endswith("; pgBackRest: " + monitor.push_error())


def test_archive_settings_and_their_conf_lines_quote_the_command():
    settings = config.archive_settings(Path("/run/it's.conf"), Path("/data/postgres"), 60)
    assert settings["archive_command"].endswith("archive-push %p")
    assert "--pg1-path=/data/postgres" in settings["archive_command"]
    line = next(
        line for line in config.conf_lines(settings).splitlines() if line.startswith("archive_command")
    )
    value = line.removeprefix("archive_command = '").removesuffix("'")
    assert value.replace("''", "'") == settings["archive_command"]  # single quotes doubled inside


NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_target_latest_and_a_time_with_its_offset():
    assert restore.parse_target("latest", NOW) is None
    assert restore.parse_target("2026-11-28 10:15:00+01", NOW) == datetime(2026, 11, 28, 9, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-11-28 10:15:00", "no UTC offset"),
        ("2026-11-29 10:15:00+00", "in the future"),
        ("yesterday", "is not a time"),
    ],
)
def test_target_errors_say_what_to_give(text, message):
    with pytest.raises(PitrError, match=message):
        restore.parse_target(text, NOW)


def cluster(path: Path, marker: str) -> Path:
    path.mkdir()
    (path / "PG_VERSION").write_text(marker)
    return path


@pytest.mark.parametrize("killed_after", ["journal", "live moved aside", "restored moved in"])
def test_a_switch_killed_at_any_point_is_finished(tmp_path, killed_after):
    live = cluster(tmp_path / "postgres", "old")
    restored = cluster(switch.restored_path(live, "S"), "new")
    previous = switch.previous_path(live, "S")
    switch._write_journal(live, {"live": str(live), "restored": str(restored), "previous": str(previous)})
    if killed_after in ("live moved aside", "restored moved in"):
        live.rename(previous)
    if killed_after == "restored moved in":
        restored.rename(live)
    assert "finished an interrupted" in switch.finish_interrupted_switch(live)
    assert (live / "PG_VERSION").read_text() == "new"
    assert (previous / "PG_VERSION").read_text() == "old"
    assert not restored.exists()
    assert not switch.journal_path(live).exists()
    assert switch.finish_interrupted_switch(live) is None


def test_a_switch_keeps_the_previous_directory_for_rollback(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    live = cluster(data / "postgres", "old")
    restored = cluster(switch.restored_path(live, "S"), "new")
    previous = switch.switch(live, restored, "S")
    assert previous == data / "postgres.before-pitr-S"
    assert sorted(path.name for path in data.iterdir()) == ["postgres", "postgres.before-pitr-S"]
    assert (live / "PG_VERSION").read_text() == "new"


def png(colour: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(out, format="PNG")
    return out.getvalue()


def put_blob(content: bytes, sha256: str | None = None) -> str:
    sha256 = sha256 or hashlib.sha256(content).hexdigest()
    path = blobs.blob_path(sha256)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return sha256


def image_name(sha256: str) -> str:
    return f"products/{sha256[:2]}/{sha256}.png"


def test_images_come_back_from_the_blob_store_checked_and_thumbnails_are_made_again(media_root):
    red = put_blob(png("red"))
    names = {image_name(red), f"products/thumbs/{red[:2]}/{red}-200.webp"}
    assert images.bring_images(names).problems == []
    assert hashlib.sha256((media_root / image_name(red)).read_bytes()).hexdigest() == red
    thumbnail = Image.open(media_root / f"products/thumbs/{red[:2]}/{red}-200.webp")
    assert thumbnail.format == "WEBP"


def test_a_missing_or_changed_image_is_named_and_nothing_wrong_is_placed(media_root):
    missing = hashlib.sha256(b"never stored").hexdigest()
    changed = hashlib.sha256(png("blue")).hexdigest()
    put_blob(png("green"), sha256=changed)  # the blob's bytes no longer match its name
    problems = images.bring_images({image_name(missing), image_name(changed)}).problems
    assert len(problems) == 2
    assert any(image_name(missing) in problem and "missing" in problem for problem in problems)
    assert any(image_name(changed) in problem and "SHA-256" in problem for problem in problems)
    assert not (media_root / image_name(changed)).exists()
    assert not list(media_root.rglob(".pitr-incoming-*"))


# `pgbackrest info --output=json` as pgBackRest 2.45 writes it for two repositories (trimmed to
# the keys read; the shape was taken from a real stanza with repo1 removed, emptied and damaged).
def at(text: str) -> int:
    return int(datetime.fromisoformat(f"2026-11-28 {text}+00:00").timestamp())


def info_backup(repo: int, label: str, stop: str, wal_stop: str, error: bool = False) -> dict:
    return {
        "archive": {"start": wal_stop, "stop": wal_stop},
        "database": {"id": 1, "repo-key": repo},
        "error": error,
        "label": label,
        "timestamp": {"start": at(stop) - 30, "stop": at(stop)},
        "type": "full",
    }


def info_archive(repo: int, newest: str) -> dict:
    return {
        "database": {"id": 1, "repo-key": repo},
        "id": "15-1",
        "max": newest,
        "min": "000000010000000000000001",
    }


def stanza_info(*, repos: dict[int, tuple[int, str]], backups: list[dict], archives: list[dict]) -> dict:
    """repos: {key: (status code, message)}."""
    codes = {code for code, _ in repos.values()}
    overall = (0, "ok") if codes == {0} else (4, "different across repos") if len(repos) > 1 else (1, "")
    return {
        "archive": archives,
        "backup": backups,
        "name": "shop",
        "repo": [
            {"cipher": "none", "key": key, "status": {"code": code, "message": message}}
            for key, (code, message) in repos.items()
        ],
        "status": {"code": overall[0], "message": overall[1]},
    }


OK = (0, "ok")
MISSING = (1, "missing stanza path")
WAL = "0000000100000000000000{:02X}".format


def both_repos(repo1=OK, repo2=OK, repo1_wal=0x20, repo2_wal=0x20) -> dict:
    backups = [info_backup(1, "20261128-100000F", "10:00:00", WAL(4))] if repo1 == OK else []
    archives = [info_archive(1, WAL(repo1_wal))] if repo1 == OK else []
    if repo2 == OK:
        backups.append(info_backup(2, "20261128-100100F", "10:01:00", WAL(6)))
        archives.append(info_archive(2, WAL(repo2_wal)))
    return stanza_info(repos={1: repo1, 2: repo2}, backups=backups, archives=archives)


TARGET = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)


def test_repo1_serves_when_both_can():
    choice = repository.choose(both_repos(), TARGET)
    assert choice.repo == 1
    assert choice.backup["label"] == "20261128-100000F"
    assert choice.newest_wal == WAL(0x20)
    assert "repo2 (S3) reaches as far" in choice.why
    assert choice.others == [2]
    assert choice.lines[0].startswith("repository: repo1 (the backup volume), because")


@pytest.mark.parametrize(
    "repo1",
    [MISSING, (3, "missing stanza data"), (99, "[FileMissingError] unable to load info file\nHINT: ...")],
)
def test_repo2_serves_when_the_backup_volume_lost_its_repository(repo1):
    choice = repository.choose(both_repos(repo1=repo1), None)
    assert choice.repo == 2
    assert choice.backup["label"] == "20261128-100100F"
    assert choice.others == []
    assert choice.why == f"repo1 (the backup volume) cannot serve it (not usable: {repo1[1].splitlines()[0]})"
    assert "HINT" not in "\n".join(choice.lines)


def test_repo2_serves_when_repo1_has_a_stanza_but_no_backup():
    info = both_repos()
    info["backup"] = [backup for backup in info["backup"] if backup["database"]["repo-key"] == 2]
    choice = repository.choose(info, TARGET)
    assert choice.repo == 2
    assert "no physical backup" in choice.why


def test_a_failed_backup_is_no_backup():
    info = both_repos()
    info["backup"][0]["error"] = True
    assert repository.choose(info, TARGET).repo == 2


def test_the_repository_whose_wal_goes_further_serves_latest():
    """repo1 fell behind (the backup volume was full): repo2 holds the newer WAL."""
    choice = repository.choose(both_repos(repo1_wal=0x10, repo2_wal=0x12), None)
    assert choice.repo == 2
    assert "repo1 (the backup volume)'s archived WAL ends sooner (000000010000000000000010)" in choice.why


def test_a_backup_finished_after_the_target_does_not_count():
    early = datetime(2026, 11, 28, 10, 0, 30, tzinfo=UTC)  # after repo1's backup, before repo2's
    choice = repository.choose(both_repos(), early)
    assert choice.repo == 1
    assert "no physical backup finished before 2026-11-28 10:00:30+00:00" in choice.why


def test_wal_that_ends_before_the_backup_does_not_count():
    choice = repository.choose(both_repos(repo1_wal=0x3), TARGET)
    assert choice.repo == 2
    assert "its WAL ends at 000000010000000000000003, before the end of backup 20261128-100000F" in choice.why


def test_no_repository_can_serve_names_each_ones_reason():
    info = both_repos(repo1=MISSING, repo2=(99, "[HostConnectError] unable to get address for 's3'"))
    with pytest.raises(repository.NoRepository) as caught:
        repository.choose(info, TARGET)
    message = str(caught.value)
    assert "repo1 (the backup volume): not usable: missing stanza path" in message
    assert "repo2 (S3): not usable: [HostConnectError]" in message


def test_repo_forced():
    choice = repository.choose(both_repos(), TARGET, forced=2)
    assert (choice.repo, choice.why, choice.others) == (2, "it was asked for (--repo 2)", [1])
    with pytest.raises(
        repository.NoRepository, match=r"repo1 \(the backup volume\) \(asked for with --repo 1\)"
    ):
        repository.choose(both_repos(repo1=MISSING), TARGET, forced=1)
    with pytest.raises(repository.NoRepository, match="there is no repo2"):
        repository.choose(stanza_info(repos={1: OK}, backups=[], archives=[]), TARGET, forced=2)


def test_one_repository():
    info = stanza_info(
        repos={1: OK},
        backups=[info_backup(1, "20261128-100000F", "10:00:00", WAL(4))],
        archives=[info_archive(1, WAL(9))],
    )
    choice = repository.choose(info, TARGET)
    assert (choice.repo, choice.why) == (1, "it is the only one")
    info["archive"] = []
    with pytest.raises(repository.NoRepository, match="no WAL archived"):
        repository.choose(info, TARGET)


def test_repo_goes_with_to_only():
    with pytest.raises(CommandError, match="--repo chooses a pgBackRest repository: it goes with --to TIME"):
        call_command("restore_backup", "--latest", "--repo", "2")


def test_a_physical_backup_by_hand_says_when_pitr_is_off(settings):
    settings.PITR_ENABLED = False
    with pytest.raises(CommandError, match=r"the physical backup failed: point-in-time recovery is off"):
        call_command("pitr_backup", "--missing")


@pytest.mark.skipif(not shutil.which("pgbackrest"), reason="pgbackrest is not installed")
def test_a_repository_that_fails_the_restore_names_the_other_one(settings, tmp_path):
    """`info` reads a repository's lists, not its files: a backup lost from repo1 shows only when
    pgBackRest restores from it (here: a repo1 that is empty). The error says which other one can."""
    settings.PITR_OS_USER = ""  # pgBackRest as this user, on files of this test's own
    settings.PITR_PGBACKREST_CONFIG = tmp_path / "pgbackrest.conf"
    settings.PITR_PGBACKREST_CONFIG.write_text(
        f"[global]\nrepo1-path={tmp_path}/repo1\nlock-path={tmp_path}/lock\nlog-path={tmp_path}\n"
        f"[shop]\npg1-path={tmp_path}/postgres\n"
    )
    live = tmp_path / "postgres"
    plan = restore.PitrPlan(None, live, switch.restored_path(live, "S"), "S", {}, 1, other_repos=[2])
    with pytest.raises(PitrError) as caught:
        restore.restore_files(plan)
    assert "no backup set found to restore" in str(caught.value)
    assert str(caught.value).endswith("; run it again with --repo 2 (repo2 can serve it too)")

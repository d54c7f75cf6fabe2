"""pgBackRest's configuration and PostgreSQL's archive settings, from the environment.

Plain Python (no Django): the Docker-less runner (ops/runner.py) writes the file before it starts
PostgreSQL, and `python -m shop.backups.pitr.config` prints it for other tooling.

repo1 is the backup volume (BACKUP_PATH/pgbackrest), repo2 S3 when BACKUP_S3_BUCKET is set.
Retention is pgBackRest's own, by time and in step with the dump sets: full backups are kept so
that the last BACKUP_LOCAL_RETENTION_DAYS (repo1) / BACKUP_S3_RETENTION_DAYS (repo2) days can be
restored to any point; older backups and the WAL only they need are expired after each backup.

Archiving never stops the shop: archive-async with archive-push-queue-max. While a repository is
unreachable (S3 down, the backup volume full or unwritable) WAL waits in pg_wal and archiving
falls behind (visible in pg_stat_archiver, alerted); beyond PITR_ARCHIVE_QUEUE_MAX pgBackRest
drops the waiting WAL (logged) instead of letting pg_wal fill the database's disk.
"""

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

STANZA = "shop"
TRUE_WORDS = ("1", "true", "yes", "on", "y")
ARCHIVE_PUSH_IO_TIMEOUT = 5  # seconds; see config_text


def as_bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in TRUE_WORDS


@dataclass(frozen=True)
class PitrConfig:
    """What pgBackRest needs to know about this installation."""

    pg_data: Path  # the live cluster's data directory (pg1-path)
    pg_port: int
    pg_socket_dir: Path  # pgBackRest talks to PostgreSQL through a unix socket
    pg_user: str  # a superuser: pgBackRest starts and stops backups, switches WAL
    repo_path: Path  # repo1
    run_dir: Path  # lock and spool directories
    log_dir: Path
    local_retention_days: int
    archive_timeout: int = 60
    archive_queue_max: str = "1GiB"
    s3_bucket: str = ""
    s3_prefix: str = "shop-backups"
    s3_endpoint: str = ""  # host[:port], from BACKUP_S3_ENDPOINT_URL (pgBackRest speaks HTTPS only)
    s3_region: str = "us-east-1"
    s3_key: str = ""
    s3_secret: str = ""
    s3_verify_tls: bool = True
    s3_ca_file: str = ""  # a CA the S3 endpoint's certificate is checked against (a private CA)
    s3_retention_days: int = 30

    @classmethod
    def from_environ(
        cls,
        environ,
        *,
        pg_data: Path,
        pg_port: int,
        pg_socket_dir: Path,
        run_dir: Path,
        log_dir: Path,
        backup_path: Path,
    ) -> "PitrConfig":
        endpoint = environ.get("BACKUP_S3_ENDPOINT_URL") or ""
        return cls(
            pg_data=pg_data,
            pg_port=pg_port,
            pg_socket_dir=pg_socket_dir,
            pg_user=environ.get("POSTGRES_USER") or "shop",
            repo_path=backup_path / "pgbackrest",
            run_dir=run_dir,
            log_dir=log_dir,
            local_retention_days=int(environ.get("BACKUP_LOCAL_RETENTION_DAYS") or 7),
            archive_timeout=int(environ.get("PITR_ARCHIVE_TIMEOUT") or 60),
            archive_queue_max=environ.get("PITR_ARCHIVE_QUEUE_MAX") or "1GiB",
            s3_bucket=environ.get("BACKUP_S3_BUCKET") or "",
            s3_prefix=(environ.get("BACKUP_S3_PREFIX") or "shop-backups").strip("/"),
            s3_endpoint=s3_endpoint_host(endpoint),
            s3_region=environ.get("BACKUP_S3_REGION") or "us-east-1",
            s3_key=environ.get("BACKUP_S3_ACCESS_KEY_ID") or "",
            s3_secret=environ.get("BACKUP_S3_SECRET_ACCESS_KEY") or "",
            s3_verify_tls=as_bool(environ.get("PITR_S3_VERIFY_TLS"), default=True),
            s3_ca_file=environ.get("PITR_S3_CA_FILE") or "",
            s3_retention_days=int(environ.get("BACKUP_S3_RETENTION_DAYS") or 30),
        )

    @property
    def lock_dir(self) -> Path:
        return self.run_dir / "lock"

    @property
    def spool_dir(self) -> Path:
        return self.run_dir / "spool"

    def directories(self) -> list[Path]:
        """Those the postgres user must own (archive-push runs as PostgreSQL's user)."""
        return [self.repo_path, self.run_dir, self.lock_dir, self.spool_dir, self.log_dir, self.pg_socket_dir]


def repositories(s3_bucket: str, s3_endpoint_url: str = "") -> list[int]:
    """The repository numbers: pgBackRest's `backup` writes to ONE (repo1 unless --repo), so each
    backup runs once per repository, or repo2 (S3) would hold WAL but no backup to replay it on.
    No repo2 on a plain-HTTP endpoint: compose's repository host leaves it out of the
    configuration (ops/entrypoint.sh; pgBackRest speaks HTTPS only to S3), the runner refuses it."""
    if not s3_bucket or s3_endpoint_url.startswith("http://"):
        return [1]
    return [1, 2]


def s3_endpoint_host(url: str) -> str:
    """pgBackRest's repo2-s3-endpoint is a host (and repo2-storage-port the port), never a URL."""
    if not url:
        return ""
    if url.startswith("http://"):
        raise ValueError(
            f"BACKUP_S3_ENDPOINT_URL={url}: pgBackRest reaches S3 over HTTPS only. Give an https:// "
            "endpoint (a TLS proxy in front of MinIO, for example), or switch PITR off (PITR_ENABLED=false)."
        )
    return url.removeprefix("https://").rstrip("/")


def config_text(config: PitrConfig) -> str:
    """pgbackrest.conf (it holds the S3 keys when S3 is configured: write it private)."""
    glob = {
        "repo1-path": config.repo_path,
        "repo1-retention-full-type": "time",
        "repo1-retention-full": config.local_retention_days,
        "lock-path": config.lock_dir,
        "spool-path": config.spool_dir,
        "log-path": config.log_dir,
        "log-level-console": "warn",
        "log-level-stderr": "warn",
        "log-level-file": "info",
        "archive-async": "y",
        "archive-push-queue-max": config.archive_queue_max,
        "start-fast": "y",
        "compress-type": "lz4",
        "process-max": 1,
    }
    if config.s3_bucket:
        host, _, port = config.s3_endpoint.partition(":")
        glob |= {
            "repo2-type": "s3",
            "repo2-path": f"/{config.s3_prefix}/pgbackrest",
            "repo2-s3-bucket": config.s3_bucket,
            "repo2-s3-region": config.s3_region,
            "repo2-s3-endpoint": host or f"s3.{config.s3_region}.amazonaws.com",
            "repo2-s3-uri-style": "path" if host else "host",
            "repo2-s3-key": config.s3_key,
            "repo2-s3-key-secret": config.s3_secret,
            "repo2-retention-full-type": "time",
            "repo2-retention-full": config.s3_retention_days,
        }
        if port:
            glob["repo2-storage-port"] = port
        if not config.s3_verify_tls:
            glob["repo2-storage-verify-tls"] = "n"
        elif config.s3_ca_file:
            glob["repo2-storage-ca-file"] = config.s3_ca_file
    stanza = {
        "pg1-path": config.pg_data,
        "pg1-port": config.pg_port,
        "pg1-socket-path": config.pg_socket_dir,
        "pg1-user": config.pg_user,
    }
    lines = [
        "# Generated by shop/backups/pitr/config.py: edit the settings (.env), not this file.",
        "[global]",
    ]
    lines += [f"{key}={value}" for key, value in glob.items()]
    lines += ["", f"[{STANZA}]"]
    lines += [f"{key}={value}" for key, value in stanza.items()]
    if config.s3_bucket:
        # archive-push goes to both repositories one segment after the other: with S3 down it
        # retried each for ~4 x io-timeout (60 s by default: 4 minutes), so repo1 fell behind
        # too and the failure showed only as a timeout without its cause. With 5 s the push
        # fails within pgBackRest's archive-timeout with its message ("repo2: [HostConnectError]").
        lines += ["", f"[{STANZA}:archive-push]", f"io-timeout={ARCHIVE_PUSH_IO_TIMEOUT}"]
    return "\n".join(lines) + "\n"


def archive_command(config_file: Path, pg_data: Path) -> str:
    """PostgreSQL's archive_command; pg1-path resolves %p (a path relative to the data directory)."""
    return (
        shlex.join(
            [
                "pgbackrest",
                f"--config={config_file}",
                f"--stanza={STANZA}",
                f"--pg1-path={pg_data}",
                "archive-push",
            ]
        )
        + " %p"
    )


def archive_settings(config_file: Path, pg_data: Path, archive_timeout: int) -> dict[str, str]:
    """The server settings that turn WAL archiving on (given ONLY with PITR on: an
    archive_command that always fails makes pg_wal grow)."""
    return {
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_command": archive_command(config_file, pg_data),
        "archive_timeout": str(archive_timeout),
    }


def conf_lines(settings: dict[str, str]) -> str:
    """The settings as postgresql.conf lines."""
    return "".join(f"{name} = '{value.replace(chr(39), chr(39) * 2)}'\n" for name, value in settings.items())


def as_options(settings: dict[str, str]) -> list[str]:
    """`-c name=value` arguments for postgres / pg_ctl -o."""
    options = []
    for name, value in settings.items():
        options += ["-c", f"{name}={value}"]
    return options


if __name__ == "__main__":  # pragma: no cover - a convenience for other tooling
    import os

    data = Path(os.environ.get("PITR_PG_DATA", "/var/lib/postgresql/data"))
    print(
        config_text(
            PitrConfig.from_environ(
                os.environ,
                pg_data=data,
                pg_port=int(os.environ.get("PITR_PG_PORT") or 5432),
                pg_socket_dir=Path(os.environ.get("PITR_PG_SOCKET_DIR") or "/var/run/postgresql"),
                run_dir=Path(os.environ.get("PITR_RUN_DIR") or "/tmp/pgbackrest"),  # noqa: S108
                log_dir=Path(os.environ.get("PITR_LOG_DIR") or "/var/log/pgbackrest"),
                backup_path=Path(os.environ.get("BACKUP_PATH") or "/backups"),
            )
        ),
        end="",
        file=sys.stdout,
    )

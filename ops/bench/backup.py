#!/usr/bin/env python
"""Benchmark: backup_now and restore_backup against the raw tools and django-dbbackup, and the
targets of issue 9, as ratios measured in the same run (medians of --repeat runs).

Generates a shop database (orders with order lines, products, images rows) and a directory
of incompressible "images", then measures, in the same run:
  full backup:      raw `pg_dump -Fc` + `tar -cf` (one after the other, as the issue defines
                    the baseline) against `backup_now --no-upload` into an empty BACKUP_PATH
                    (which runs pg_dump beside the uploads work: the two overlap); also against
                    the raw tools followed by a `sync`, as our sets are durable; and timed
                    inside a started process, without the start-up of Python and Django that
                    the Celery worker of the scheduled backups pays once
  restore:          raw `createdb` + `pg_restore` + `tar -xf` against `restore_backup --latest --yes`
  daily backup:     a second backup after 1 % new images against the first (time, and bytes
                    stored in BACKUP_PATH; with S3 on a moto server: time and bytes uploaded)
  30 daily sets:    --days backups of --daily-image-mb of images growing 1 % a day: BACKUP_PATH
                    on disk against the first (full) set
  django-dbbackup:  `dbbackup` + `mediabackup` (in a venv of their own, --dbbackup-venv, with a
                    settings overlay written into the workdir) against our full and daily backup
  peak memory:      peak RSS of backup_now and restore_backup at each --memory-image-mb size
  encryption:       backup + S3 upload with BACKUP_AGE_RECIPIENTS set against unset, and a
                    local backup with BACKUP_ENCRYPT_LOCAL on against off (the set's files and
                    every image blob encrypted on disk), when the code has encryption
  zstd:             `backup_now --only db` with BACKUP_DUMP_COMPRESSION=auto (zstd on pg_dump
                    16+) against `default`: dump size and time. The local pg_dump is used, or
                    with --pg-dump-image a pg_dump run from that Docker image (e.g.
                    postgres:17-trixie; its `docker run` start-up is in both times)
and prints every run, then one table: each target, its ratio, and whether it is met. Peak
RSS is that of our process (from wait4; pg_dump/pg_restore children have their own).

    .venv/bin/python ops/bench/backup.py                      # 200k order lines, 1 GB of images
    .venv/bin/python ops/bench/backup.py --order-lines 20000 --image-mb 100 \
        --daily-image-mb 100 --memory-image-mb 100,1024

Works only on databases it creates (default `shop_bench` and names derived from it) and
under --workdir; both are removed at the end unless --keep. The 30 daily sets stop early (and
say so) when the disk would fill up.
"""

import argparse
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from statistics import median
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parents[2]


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--order-lines", type=int, default=200_000)
    parser.add_argument("--image-mb", type=int, default=1024, help="total size of the generated images")
    parser.add_argument(
        "--server", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL URL, no db"
    )
    parser.add_argument("--database", default="shop_bench")
    parser.add_argument("--workdir", type=Path, help="default: a new temporary directory")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each step; the median is reported")
    parser.add_argument(
        "--s3",
        action="store_true",
        help="also time an upload to and a restore from S3 (moto, in a process of its own)",
    )
    parser.add_argument("--days", type=int, default=30, help="daily sets in the growth test (0: skip)")
    parser.add_argument(
        "--daily-image-mb", type=int, default=2048, help="images on the first day of the growth test"
    )
    parser.add_argument(
        "--memory-image-mb",
        default="100,2048",
        help="image sizes (MB, comma-separated) at which peak memory is measured ('': skip)",
    )
    parser.add_argument(
        "--dbbackup-venv",
        type=Path,
        default=Path("/var/tmp/shop-bench-dbbackup-venv"),
        help="venv for django-dbbackup (made if missing; never the project's); 'none': skip",
    )
    parser.add_argument("--dbbackup-version", default="5.4.0")
    parser.add_argument("--pg-dump-image", help="run pg_dump from this Docker image for the zstd comparison")
    parser.add_argument(
        "--skip",
        default="",
        help="sections to leave out, comma-separated: daily,daily-s3,growth,dbbackup,memory,encryption,zstd",
    )
    parser.add_argument("--s3-port", type=int, default=0, help="moto's port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--keep", action="store_true", help="keep the database and files")
    return parser.parse_args()


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = args.workdir or Path(tempfile.mkdtemp(prefix="shop-bench-"))
        self.media = self.work / "uploads"
        self.backups = self.work / "backups"
        self.url = f"{args.server.rstrip('/')}/{args.database}"
        parts = urlsplit(self.url)
        self.pg_env = {
            **os.environ,
            "PGHOST": parts.hostname or "127.0.0.1",
            "PGPORT": str(parts.port or 5432),
            "PGUSER": parts.username or "postgres",
            **({"PGPASSWORD": parts.password} if parts.password else {}),
        }
        self.admin_url = urlunsplit((parts.scheme, parts.netloc, "/postgres", "", ""))
        self.s3_env: dict[str, str] = {"BACKUP_S3_BUCKET": ""}
        self.s3_client = None
        # Production settings refuse to start without a real secret key; the bench reads no .env.
        self.secret_key = os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(60)
        self.image_count = 0

    def manage_env(self, media: Path | None = None, backups: Path | None = None, **extra) -> dict:
        return {
            **os.environ,
            "DJANGO_READ_DOT_ENV": "false",
            "DJANGO_SECRET_KEY": self.secret_key,
            "DATABASE_URL": self.url,
            "MEDIA_ROOT": str(media or self.media),
            "BACKUP_PATH": str(backups or self.backups),
            "BACKUP_LOCAL_RETENTION_DAYS": "60",  # every set of a run is kept (they are minutes apart anyway)
            **self.s3_env,
            "LOG_DIR": str(self.work / "logs"),
            "LOG_LEVEL": "WARNING",
            **extra,
        }

    # --- data -----------------------------------------------------------------------------
    def create(self):
        # Our modules compiled to .pyc first, as the Docker image does (Dockerfile: compileall):
        # where PYTHONDONTWRITEBYTECODE is set, every manage.py run would otherwise compile
        # the ~60 modules of shop/ from source again (~0.1 s of each command's start-up).
        subprocess.run([sys.executable, "-m", "compileall", "-q", "shop", "ops"], cwd=ROOT, check=True)
        self.drop_databases()
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.args.database}"')
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=self.manage_env(), check=True
        )
        lines = self.args.order_lines
        orders = max(1, lines // 4)
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO catalog_category (name, slug, description, position) "
                "VALUES ('Bench', 'bench', '', 0)"
            )
            conn.execute(
                """
                INSERT INTO catalog_product (category_id, name, slug, sku, description, price, stock,
                                             is_active, created_at, updated_at)
                SELECT (SELECT id FROM catalog_category), 'Product ' || g, 'product-' || g, 'SKU-' || g,
                       repeat('A sturdy product. ', 20), (g % 500) + 0.99, 1000, true, now(), now()
                FROM generate_series(1, 2000) g
                """
            )
            conn.execute(
                """
                INSERT INTO orders_order (number, email, full_name, address_line1, address_line2,
                    postal_code, city, country, phone, status, payment_method, currency, subtotal,
                    shipping_cost, total, idempotency_key, created_at, updated_at)
                SELECT 'SO-' || g, 'customer' || g || '@example.com', 'Customer ' || g,
                       g || ' Main Street', '', '1000', 'Brussels', 'BE', '', 'paid', 'bank_transfer',
                       'EUR', 40, 0, 40,
                       md5(g::text), now() - (g || ' minutes')::interval, now()
                FROM generate_series(1, %s) g
                """,
                [orders],
            )
            conn.execute(
                """
                INSERT INTO orders_orderline (order_id, product_id, product_name, sku, unit_price,
                                              quantity, line_total)
                SELECT o.id, p.id, p.name, p.sku, p.price, 1 + g %% 3, p.price * (1 + g %% 3)
                FROM generate_series(0, %s - 1) g
                JOIN orders_order o ON o.number = 'SO-' || (1 + g / 4)
                JOIN catalog_product p ON p.sku = 'SKU-' || (1 + g %% 2000)
                """,
                [lines],
            )
            conn.execute("VACUUM ANALYZE")
        self.make_images(self.media, self.args.image_mb * 2**20)

    def make_images(self, media: Path, total_bytes: int) -> list[Path]:
        """Random bytes: as incompressible as real JPEGs, in the storage's content-addressed layout
        (named by their SHA-256, like the shop's). Returns the files written."""
        written, remaining = [], total_bytes
        while remaining > 0:
            n = self.image_count
            size = min(remaining, 200_000 + (n * 7919) % 1_800_000)  # 0.2 to 2 MB
            data = os.urandom(size)
            name = hashlib.sha256(data).hexdigest()
            path = media / "products" / name[:2] / f"{name}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            written.append(path)
            remaining -= size
            self.image_count += 1
        return written

    def drop_databases(self):
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            names = [
                row[0]
                for row in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname = %s OR starts_with(datname, %s)",
                    [self.args.database, f"{self.args.database}__"],
                )
            ]
            for name in names:
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')

    # --- measurements ---------------------------------------------------------------------
    def run(self, command, env, cwd=ROOT) -> tuple[float, float]:
        """(seconds, peak RSS in MB of the process) for one command."""
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.monotonic() - started
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{command} failed")
        return elapsed, usage.ru_maxrss / 1024

    def baseline_backup(self) -> float:
        raw = self.work / "raw"
        raw.mkdir(exist_ok=True)
        env = {**self.pg_env, "PGDATABASE": self.args.database}
        dump, _ = self.run(["pg_dump", "-Fc", "-f", str(raw / "db.dump")], env)
        tar, _ = self.run(["tar", "-cf", str(raw / "uploads.tar"), "-C", str(self.media), "."], env)
        return dump + tar

    def sync_seconds(self) -> float:
        """The time of a `sync` now: what the raw tools would add to be durable, as our sets are."""
        started = time.monotonic()
        os.sync()
        return time.monotonic() - started

    def baseline_restore(self) -> float:
        raw = self.work / "raw"
        scratch = f"{self.args.database}__raw"
        env = {**self.pg_env, "PGDATABASE": "postgres"}
        subprocess.run(["dropdb", "--if-exists", scratch], env=env, check=True)
        target = self.work / "raw-extract"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        sync_and_settle()
        create, _ = self.run(["createdb", scratch], env)
        restore, _ = self.run(["pg_restore", "-d", scratch, str(raw / "db.dump")], env)
        extract, _ = self.run(["tar", "-xf", str(raw / "uploads.tar"), "-C", str(target)], env)
        return create + restore + extract

    def forget_previous_restores(self, media: Path | None = None):
        """Not timed: what a restore keeps for rollback, so repeated runs start alike."""
        for kept in (media or self.media).glob(".pre-restore-*"):
            shutil.rmtree(kept)
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for (name,) in conn.execute(
                "SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                [f"{self.args.database}__pre_"],
            ).fetchall():
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        sync_and_settle()

    def ours(self, *args, env: dict | None = None) -> tuple[float, float]:
        return self.run([sys.executable, "manage.py", *args], env or self.manage_env())

    def in_process(self, what: str, env: dict | None = None) -> float:
        """Seconds of run_backup() (what="backup") or restore() (what="restore") timed inside a
        process that has started and imported the backup code already, as the Celery backup
        worker that runs the scheduled backups has: the work without the start-up."""
        output = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", IN_PROCESS[what]],
            cwd=ROOT,
            env=env or self.manage_env(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return float(output.rsplit("IN-PROCESS ", 1)[1])

    def startup(self) -> float:
        """Seconds for a process to start Python and set Django up (settings, apps, logging), and
        nothing else: the fixed cost every manage.py command pays before its work."""
        command = [sys.executable, "-c", "import django; django.setup()"]
        env = self.manage_env(DJANGO_SETTINGS_MODULE="shop.settings")
        return self.run(command, env)[0]

    def start_s3(self) -> subprocess.Popen:
        """moto in server mode, in a process of its own: had it lived in this one, its memory
        would show up in the children's peak RSS (Linux keeps the high-water mark across exec)."""
        import boto3

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", self.args.s3_port))
            port = sock.getsockname()[1]
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        endpoint = f"http://127.0.0.1:{port}"
        # moto accepts any credentials.
        credentials = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **credentials)
        for _ in range(100):
            try:
                client.create_bucket(Bucket="bench-backups")
                break
            except Exception:  # not listening yet
                time.sleep(0.1)
        self.s3_client = client
        self.s3_env = {
            "BACKUP_S3_BUCKET": "bench-backups",
            "BACKUP_S3_ENDPOINT_URL": endpoint,
            "BACKUP_S3_ACCESS_KEY_ID": credentials["aws_access_key_id"],
            "BACKUP_S3_SECRET_ACCESS_KEY": credentials["aws_secret_access_key"],
        }
        return server

    def s3_bytes(self, prefix: str) -> int:
        """Bytes stored under `prefix` in the moto bucket."""
        total = 0
        for page in self.s3_client.get_paginator("list_objects_v2").paginate(
            Bucket="bench-backups", Prefix=prefix
        ):
            total += sum(item["Size"] for item in page.get("Contents", []))
        return total

    def s3_forget(self, prefix: str) -> None:
        """Delete a run's objects, so moto (which keeps them in memory) does not grow run after run."""
        for page in self.s3_client.get_paginator("list_objects_v2").paginate(
            Bucket="bench-backups", Prefix=prefix
        ):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.s3_client.delete_objects(Bucket="bench-backups", Delete={"Objects": keys})

    def cleanup(self):
        if not self.args.keep:
            self.drop_databases()
            shutil.rmtree(self.work, ignore_errors=True)


IN_PROCESS = {
    "backup": (
        "import time\n"
        "from shop.backups.backup import run_backup\n"
        "from shop.backups.progress import SilentReporter\n"
        "started = time.monotonic()\n"
        "run_backup(SilentReporter(), upload=False)\n"
        "print(f'IN-PROCESS {time.monotonic() - started:.4f}')\n"
    ),
    "restore": (
        "import time\n"
        "from shop.backups.restore import restore\n"
        "from shop.backups.progress import SilentReporter\n"
        "started = time.monotonic()\n"
        "restore(None, None, None, dry_run=False, confirm=lambda: True, show=lambda lines: None,\n"
        "        report=SilentReporter(), confirmed=True)\n"
        "print(f'IN-PROCESS {time.monotonic() - started:.4f}')\n"
    ),
}


def sync_and_settle():
    # Each measured step starts with dirty pages written out, so one step's writeback
    # is not billed to the next.
    os.sync()
    time.sleep(1)


def stored_bytes(root: Path) -> int:
    """Bytes of the files under `root`, each inode once (a hard-linked blob is stored once)."""
    seen, total = set(), 0
    for directory, _, files in os.walk(root):
        for name in files:
            info = os.lstat(os.path.join(directory, name))
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_size
    return total


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


class Results:
    """Every run of every measurement, and the target rows printed at the end."""

    def __init__(self):
        self.runs: dict[str, list[float]] = {}
        self.rows: list[tuple[str, str, str, str]] = []

    def add(self, label: str, value: float) -> None:
        self.runs.setdefault(label, []).append(value)

    def median(self, label: str) -> float:
        return median(self.runs[label])

    def ratio_row(self, what: str, numerator: str, denominator: str, target: str, ok) -> float:
        ratio = self.median(numerator) / self.median(denominator)
        met = "" if target == "(reported)" else ("yes" if ok(ratio) else "NO")
        self.rows.append((what, f"{ratio:.3f}", target, met))
        return ratio

    def row(self, what: str, measured: str, target: str = "(reported)", met: str = "") -> None:
        self.rows.append((what, measured, target, met))

    def print_runs(self) -> None:
        print("\nAll runs:")
        for label, values in self.runs.items():
            print(f"  {label:44} " + ", ".join(_short(v) for v in values))

    def print_table(self) -> None:
        width = max(len(row[0]) for row in self.rows) + 2
        print(f"\n{'target (medians)':{width}}{'measured':>16}  {'target':<14}met")
        for what, measured, target, met in self.rows:
            print(f"{what:{width}}{measured:>16}  {target:<14}{met}")


def _short(value: float) -> str:
    return f"{value / 2**20:.1f}MB" if value >= 10_000 else f"{value:.2f}"


# --- the sections ------------------------------------------------------------------------------
def full_backup_and_restore(bench: Bench, results: Results) -> None:
    """Our full backup and restore against the raw tools, alternating, and their peak RSS."""
    for _ in range(bench.args.repeat):
        # Alternate baseline and ours, so a noisy neighbour hurts both alike.
        sync_and_settle()
        raw = bench.baseline_backup()
        results.add("raw backup s", raw)
        results.add("raw backup + sync s", raw + bench.sync_seconds())
        sync_and_settle()
        # A full backup starts from an empty BACKUP_PATH: with the blobs of the previous run
        # there, it would be a daily (incremental) one.
        fresh_dir(bench.backups)
        seconds, peak = bench.ours("backup_now", "--no-upload")
        results.add("full backup s", seconds)
        results.add(f"peak RSS backup MB at {bench.args.image_mb} MB", peak)
        results.add("startup s", bench.startup())
        fresh_dir(bench.backups)
        sync_and_settle()
        results.add("full backup in-process s", bench.in_process("backup"))
        results.add("raw restore s", bench.baseline_restore())
        bench.forget_previous_restores()
        seconds, peak = bench.ours("restore_backup", "--latest", "--yes")
        results.add("restore s", seconds)
        results.add(f"peak RSS restore MB at {bench.args.image_mb} MB", peak)
        bench.forget_previous_restores()
        results.add("restore in-process s", bench.in_process("restore"))
        bench.forget_previous_restores()
    raw_mb = sum(f.stat().st_size for f in (bench.work / "raw").iterdir()) / 2**20
    print(f"  raw dump + tar: {raw_mb:.0f} MB")
    print("  (raw: pg_dump, then tar; ours: pg_dump overlaps the uploads work, in a thread beside it)")
    results.ratio_row(
        "full backup / raw pg_dump -Fc + tar", "full backup s", "raw backup s", "<= 1.1", lambda r: r <= 1.1
    )
    results.ratio_row(
        "restore / raw pg_restore + tar -x", "restore s", "raw restore s", "<= 1.2", lambda r: r <= 1.2
    )
    # The same, without the fixed start-up of a manage.py process (as in the Celery worker that
    # runs the scheduled backups), and against raw tools made durable by a sync as our sets are.
    startup = results.median("startup s")
    results.row("start-up of a manage.py process (Python + django.setup), s", f"{startup:.2f}")
    results.ratio_row(
        "full backup in-process / raw", "full backup in-process s", "raw backup s", "(reported)", None
    )
    results.ratio_row(
        "full backup in-process / raw + sync",
        "full backup in-process s",
        "raw backup + sync s",
        "(reported)",
        None,
    )
    results.ratio_row("full backup / raw + sync", "full backup s", "raw backup + sync s", "(reported)", None)
    results.ratio_row("restore in-process / raw", "restore in-process s", "raw restore s", "(reported)", None)


def daily_backup(bench: Bench, results: Results, s3: bool) -> None:
    """First (full) backup into an empty BACKUP_PATH (and S3 prefix), 1 % new images, second
    backup: time and bytes of the second against the first."""
    where = "S3" if s3 else "local"
    one_percent = bench.args.image_mb * 2**20 // 100
    for run in range(bench.args.repeat):
        backups = fresh_dir(bench.work / f"daily-{where}")
        prefix = f"daily-{uuid.uuid4().hex[:8]}"
        env = bench.manage_env(backups=backups, BACKUP_S3_PREFIX=prefix)
        flags = () if s3 else ("--no-upload",)
        for which in ("first", "second"):
            if which == "second":
                added = bench.make_images(bench.media, one_percent)
            sync_and_settle()
            before = stored_bytes(backups), (bench.s3_bytes(prefix) if s3 else 0)
            seconds, _ = bench.ours("backup_now", *flags, env=env)
            results.add(f"{where} {which} backup s", seconds)
            results.add(f"{where} {which} backup bytes stored", stored_bytes(backups) - before[0])
            if s3:
                results.add(f"{where} {which} backup bytes uploaded", bench.s3_bytes(prefix) - before[1])
        for path in added:
            path.unlink()
        if s3:
            bench.s3_forget(prefix)
        shutil.rmtree(backups)
        print(f"  daily backup ({where}) run {run + 1} done")
    at_most = lambda r: r <= 0.05  # noqa: E731
    results.ratio_row(
        f"2nd backup after 1% new / 1st, time ({where})",
        f"{where} second backup s",
        f"{where} first backup s",
        "<= 0.05",
        at_most,
    )
    if not s3:
        daily_in_process(bench, results, one_percent)
    if not s3:  # with S3, what counts is what is uploaded
        results.ratio_row(
            "2nd backup after 1% new / 1st, bytes stored (local)",
            "local second backup bytes stored",
            "local first backup bytes stored",
            "<= 0.05",
            at_most,
        )
    if s3:
        results.ratio_row(
            "2nd backup after 1% new / 1st, bytes uploaded (S3)",
            "S3 second backup bytes uploaded",
            "S3 first backup bytes uploaded",
            "<= 0.05",
            at_most,
        )


def daily_in_process(bench: Bench, results: Results, one_percent: int) -> None:
    """The first and second local backup again, timed inside the process (no start-up)."""
    for _ in range(bench.args.repeat):
        backups = fresh_dir(bench.work / "daily-in-process")
        env = bench.manage_env(backups=backups)
        sync_and_settle()
        results.add("local first backup in-process s", bench.in_process("backup", env))
        added = bench.make_images(bench.media, one_percent)
        sync_and_settle()
        results.add("local second backup in-process s", bench.in_process("backup", env))
        for path in added:
            path.unlink()
        shutil.rmtree(backups)
    results.ratio_row(
        "2nd backup after 1% new / 1st, time in-process (local)",
        "local second backup in-process s",
        "local first backup in-process s",
        "<= 0.05",
        lambda r: r <= 0.05,
    )


def growth(bench: Bench, results: Results) -> None:
    """--days daily sets of --daily-image-mb of images growing 1 % a day, all kept: BACKUP_PATH
    on disk against the first (full) set. Stops early when the next set might not fit on disk."""
    media = fresh_dir(bench.work / "growth-uploads")
    backups = fresh_dir(bench.work / "growth-backups")
    bench.make_images(media, bench.args.daily_image_mb * 2**20)
    env = bench.manage_env(media=media, backups=backups)
    first = None
    day = 0
    for day in range(1, bench.args.days + 1):
        if day > 1:
            bench.make_images(media, stored_bytes(media) // 100)
        free = shutil.disk_usage(backups).free
        if free < 2 * stored_bytes(media) + 5 * 2**30:
            print(
                f"  growth: stopped before day {day}: {free / 2**30:.1f} GB free, too little for one more set"
            )
            day -= 1
            break
        bench.ours("backup_now", "--no-upload", env=env)
        if first is None:
            first = stored_bytes(backups)
    total = stored_bytes(backups)
    print(
        f"  growth: {day} sets, {total / 2**20:.0f} MB in BACKUP_PATH; the first alone {first / 2**20:.0f} MB"
    )
    ratio = total / first
    results.row(
        f"{day} daily sets (+1%/day) on disk / one full set",
        f"{ratio:.2f}",
        "<= 1.5" + ("" if day == bench.args.days else f" ({bench.args.days} days)"),
        "yes" if ratio <= 1.5 else "NO",
    )
    shutil.rmtree(backups)
    shutil.rmtree(media)


def _purelib(python: Path) -> str:
    """The site-packages directory of that Python (its venv's)."""
    return subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def dbbackup_python(venv: Path, version: str) -> Path:
    """The venv's python, with django-dbbackup installed in it (not in the project's venv); the
    project's packages are visible to it through a .pth file, written again on every run: a venv
    kept from another checkout must see this one's packages."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run(
            [getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)], check=True
        )
    site_packages = _purelib(python)
    ours = Path(_purelib(Path(sys.executable))).resolve()
    Path(site_packages, "shop-project-venv.pth").write_text(f"{ours}\n")
    installed = subprocess.run([str(python), "-c", "import dbbackup"], capture_output=True, check=False)
    if installed.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"django-dbbackup=={version}"], check=True)
    return python


DBBACKUP_SETTINGS = """\
# Written by ops/bench/backup.py: the shop's settings plus django-dbbackup, for the benchmark only.
from shop.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "dbbackup"]  # noqa: F405
STORAGES = {{
    **STORAGES,  # noqa: F405
    "dbbackup": {{
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {{"location": {location!r}}},
    }},
}}
"""


def dbbackup_comparison(bench: Bench, results: Results) -> None:
    """django-dbbackup's `dbbackup` + `mediabackup` (defaults: pg_dump -Fc, an uncompressed tar)
    against our full backup and our daily backup (the second after 1 % new images)."""
    python = dbbackup_python(bench.args.dbbackup_venv, bench.args.dbbackup_version)
    overlay = bench.work / "dbbackup-settings"
    location = overlay / "storage"
    fresh_dir(location)
    (overlay / "bench_dbbackup_settings.py").write_text(DBBACKUP_SETTINGS.format(location=str(location)))
    env = bench.manage_env(
        DJANGO_SETTINGS_MODULE="bench_dbbackup_settings",
        PYTHONPATH=os.pathsep.join([str(overlay), str(ROOT)]),
    )
    for _ in range(bench.args.repeat):
        sync_and_settle()
        db, _ = bench.run([str(python), "manage.py", "dbbackup", "--noinput", "--quiet"], env)
        media, _ = bench.run([str(python), "manage.py", "mediabackup", "--noinput", "--quiet"], env)
        results.add("django-dbbackup dbbackup + mediabackup s", db + media)
        fresh_dir(location)
    results.ratio_row(
        "dbbackup + mediabackup / our full backup",
        "django-dbbackup dbbackup + mediabackup s",
        "full backup s",
        "(reported)",
        lambda r: True,
    )
    if "local second backup s" in results.runs:
        results.ratio_row(
            "dbbackup + mediabackup / our daily backup",
            "django-dbbackup dbbackup + mediabackup s",
            "local second backup s",
            ">= 10",
            lambda r: r >= 10,
        )
    if "local second backup in-process s" in results.runs:
        results.ratio_row(
            "dbbackup + mediabackup / our daily backup in-process",
            "django-dbbackup dbbackup + mediabackup s",
            "local second backup in-process s",
            "(reported)",
            None,
        )


def memory(bench: Bench, results: Results, sizes: list[int]) -> None:
    """Peak RSS of backup_now and restore_backup at each image size (MB), on the same database."""
    peaks = {}
    for size in sizes:
        if size == bench.args.image_mb:
            media = bench.media
        else:
            media = fresh_dir(bench.work / f"memory-{size}")
            bench.make_images(media, size * 2**20)
        backups = fresh_dir(bench.work / f"memory-backups-{size}")
        env = bench.manage_env(media=media, backups=backups)
        _, backup_peak = bench.ours("backup_now", "--no-upload", env=env)
        _, restore_peak = bench.ours("restore_backup", "--latest", "--yes", env=env)
        bench.forget_previous_restores(media)
        peaks[size] = backup_peak, restore_peak
        results.add(f"peak RSS backup MB at {size} MB", backup_peak)
        results.add(f"peak RSS restore MB at {size} MB", restore_peak)
        shutil.rmtree(backups)
        if media != bench.media:
            shutil.rmtree(media)
    for index, what in enumerate(("backup", "restore")):
        measured = " / ".join(f"{peaks[size][index]:.0f}" for size in sizes)
        worst = max(peaks[size][index] for size in sizes)
        flat = peaks[sizes[-1]][index] / peaks[sizes[0]][index]
        results.row(
            f"peak RSS {what} MB at {' / '.join(map(str, sizes))} MB images",
            f"{measured} (x{flat:.2f})",
            "<= 100, flat",
            "yes" if worst <= 100 and flat <= 1.2 else "NO",
        )


def encryption(bench: Bench, results: Results) -> None:
    """Backup time with age encryption on against off, alternating: of the local set where the
    code can encrypt it (BACKUP_ENCRYPT_LOCAL: the set's files and, into an empty BACKUP_PATH,
    every image blob), and of the S3 copy (BACKUP_AGE_RECIPIENTS)."""
    settings_text = (ROOT / "shop" / "settings.py").read_text()
    if "BACKUP_AGE_RECIPIENTS" not in settings_text:
        results.row("encryption on / off, backup time", "n/a", "<= 1.1", "(no encryption in this code)")
        return
    import pyrage

    recipient = str(pyrage.x25519.Identity.generate().to_public())
    variants = [("S3", (), {"BACKUP_AGE_RECIPIENTS": recipient})]
    if "BACKUP_ENCRYPT_LOCAL" in settings_text:
        local = {"BACKUP_AGE_RECIPIENTS": recipient, "BACKUP_ENCRYPT_LOCAL": "true"}
        variants.insert(0, ("local", ("--no-upload",), local))
    for where, flags, on in variants:
        for _ in range(bench.args.repeat):
            for label, extra in (("off", {}), ("on", on)):
                backups = fresh_dir(bench.work / "encryption")
                prefix = f"encryption-{uuid.uuid4().hex[:8]}"
                env = bench.manage_env(backups=backups, BACKUP_S3_PREFIX=prefix, **extra)
                sync_and_settle()
                seconds, _ = bench.ours("backup_now", *flags, env=env)
                results.add(f"backup ({where}), encryption {label} s", seconds)
                if where == "S3":
                    bench.s3_forget(prefix)
                shutil.rmtree(backups)
        results.ratio_row(
            f"encryption on / off, backup time ({where})",
            f"backup ({where}), encryption on s",
            f"backup ({where}), encryption off s",
            "<= 1.1",
            lambda r: r <= 1.1,
        )


PG_DUMP_WRAPPER = """#!/bin/sh
# Written by ops/bench/backup.py: {tool} from the Docker image {image}, on the host's network.
exec docker run --rm -i --network host -e PGHOST -e PGPORT -e PGUSER -e PGPASSWORD -e PGDATABASE \\
    -e PGAPPNAME -e PGSSLMODE -v {work}:{work} {image} {tool} "$@"
"""


def zstd(bench: Bench, results: Results) -> None:
    """`backup_now --only db` with BACKUP_DUMP_COMPRESSION=auto against default: dump size and time."""
    path = os.environ["PATH"]
    if bench.args.pg_dump_image:
        bin_dir = fresh_dir(bench.work / "pg-dump-bin")
        wrapper = bin_dir / "pg_dump"
        wrapper.write_text(
            PG_DUMP_WRAPPER.format(tool="pg_dump", image=bench.args.pg_dump_image, work=bench.work)
        )
        wrapper.chmod(0o755)
        path = f"{bin_dir}{os.pathsep}{path}"
    version = subprocess.run(
        ["pg_dump", "--version"], capture_output=True, text=True, env={**os.environ, "PATH": path}, check=True
    ).stdout.strip()
    for _ in range(bench.args.repeat):
        for setting in ("default", "auto"):
            backups = fresh_dir(bench.work / "zstd")
            env = bench.manage_env(backups=backups, PATH=path, BACKUP_DUMP_COMPRESSION=setting)
            sync_and_settle()
            seconds, _ = bench.ours("backup_now", "--no-upload", "--only", "db", env=env)
            [set_dir] = [entry for entry in backups.iterdir() if entry.name[0].isdigit()]
            manifest = json.loads((set_dir / "manifest.json").read_text())
            results.add(f"dump {setting} s", seconds)
            results.add(f"dump {setting} bytes", manifest["files"]["db.dump"]["size"])
            used = manifest.get("database", {}).get("dump_compression", "default")
            shutil.rmtree(backups)
    print(f"  zstd: {version}; auto used {used}")
    for what, unit in (("size", "bytes"), ("time", "s")):
        results.ratio_row(
            f"dump auto ({used}) / default, {what}",
            f"dump auto {unit}",
            f"dump default {unit}",
            "(reported)",
            lambda r: True,
        )


def time_s3(bench: Bench, results: Results) -> None:
    upload, upload_rss = bench.ours("backup_now")
    bench.forget_previous_restores()
    fetch, fetch_rss = bench.ours("restore_backup", "--latest", "--source", "s3", "--yes")
    bench.forget_previous_restores()
    results.add("backup + S3 upload s", upload)
    results.add("peak RSS backup + S3 upload MB", upload_rss)
    results.add("restore from S3 s", fetch)
    results.add("peak RSS restore from S3 MB", fetch_rss)


def main():
    args = parse_args()
    skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    bench = Bench(args)
    results = Results()
    server = None
    try:
        print(
            f"Generating {args.order_lines} order lines and {args.image_mb} MB of images in {bench.work} ..."
        )
        started = time.monotonic()
        bench.create()
        print(f"  done in {time.monotonic() - started:.0f} s")
        print("Full backup and restore against the raw tools ...")
        full_backup_and_restore(bench, results)
        if {"daily-s3", "encryption"} - skip or args.s3:
            server = bench.start_s3()
        if "daily" not in skip:
            print("Daily backup: the second after 1 % new images ...")
            daily_backup(bench, results, s3=False)
            if "daily-s3" not in skip:
                daily_backup(bench, results, s3=True)
        if "dbbackup" not in skip and str(args.dbbackup_venv) != "none":
            print(f"django-dbbackup {args.dbbackup_version} (venv {args.dbbackup_venv}) ...")
            dbbackup_comparison(bench, results)
        if "memory" not in skip and args.memory_image_mb:
            sizes = [int(size) for size in args.memory_image_mb.split(",")]
            print(f"Peak memory at {sizes} MB of images ...")
            memory(bench, results, sizes)
        if "encryption" not in skip:
            print("Encryption on and off ...")
            encryption(bench, results)
        if "zstd" not in skip:
            print("Dump compression: auto (zstd on pg_dump 16+) against pg_dump's default ...")
            zstd(bench, results)
        if "growth" not in skip and args.days:
            print(f"{args.days} daily sets of {args.daily_image_mb} MB of images growing 1 % a day ...")
            growth(bench, results)
        if args.s3:
            time_s3(bench, results)
        results.print_runs()
        print(
            f"\nData: {args.order_lines} order lines, {args.image_mb} MB images; "
            f"{args.repeat} runs of each measurement, medians"
        )
        results.print_table()
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        bench.cleanup()


if __name__ == "__main__":
    main()

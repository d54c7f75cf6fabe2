#!/usr/bin/env python
"""Benchmark: backup_now and restore_backup against the raw tools, on a generated data set.

Generates a shop database (orders with order lines, products, images rows) and a directory
of incompressible "images", then times, in the same run:
  baseline backup:  pg_dump -Fc to a file, then tar -cf of the uploads
  ours:             manage.py backup_now --no-upload
  baseline restore: createdb + pg_restore, then tar -xf into an empty directory
  ours:             manage.py restore_backup --latest --yes
and prints the ratios and the peak RSS of our processes (from wait4, so pg_dump/pg_restore
children, which have their own RSS, are not added to it).

    .venv/bin/python ops/bench/backup.py                      # 200k order lines, 1 GB of images
    .venv/bin/python ops/bench/backup.py --order-lines 20000 --image-mb 100

Works only on databases it creates (default `shop_bench` and names derived from it) and
under --workdir; both are removed at the end unless --keep.
"""

import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
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
        help="also time an upload to and a restore from S3 (moto, in this process)",
    )
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

    def manage_env(self) -> dict:
        return {
            **os.environ,
            "DJANGO_READ_DOT_ENV": "false",
            "DATABASE_URL": self.url,
            "MEDIA_ROOT": str(self.media),
            "BACKUP_PATH": str(self.backups),
            **self.s3_env,
            "LOG_DIR": str(self.work / "logs"),
            "LOG_LEVEL": "WARNING",
        }

    # --- data -----------------------------------------------------------------------------
    def create(self):
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
        self.make_images()

    def make_images(self):
        """Random bytes: as incompressible as real JPEGs, in the storage's content-addressed layout."""
        remaining = self.args.image_mb * 1024 * 1024
        n = 0
        while remaining > 0:
            size = min(remaining, 200_000 + (n * 7919) % 1_800_000)  # 0.2 to 2 MB
            data = os.urandom(size)
            name = hashlib.sha256(data).hexdigest()  # named by content, as the catalog names images
            path = self.media / "products" / name[:2] / f"{name}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            remaining -= size
            n += 1
        return n

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

    def forget_previous_restores(self):
        """Not timed: what a restore keeps for rollback, so repeated runs start alike."""
        for kept in self.work.glob("uploads.pre-restore-*"):
            shutil.rmtree(kept)
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for (name,) in conn.execute(
                "SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                [f"{self.args.database}__pre_"],
            ).fetchall():
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        sync_and_settle()

    def ours(self, *args) -> tuple[float, float]:
        return self.run([sys.executable, "manage.py", *args], self.manage_env())

    def start_s3(self) -> subprocess.Popen:
        """moto in server mode, in a process of its own: had it lived in this one, its memory
        would show up in the children's peak RSS (Linux keeps the high-water mark across exec)."""
        import boto3

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
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
        self.s3_env = {
            "BACKUP_S3_BUCKET": "bench-backups",
            "BACKUP_S3_ENDPOINT_URL": endpoint,
            "BACKUP_S3_ACCESS_KEY_ID": credentials["aws_access_key_id"],
            "BACKUP_S3_SECRET_ACCESS_KEY": credentials["aws_secret_access_key"],
        }
        return server

    def cleanup(self):
        if not self.args.keep:
            self.drop_databases()
            shutil.rmtree(self.work, ignore_errors=True)


def sync_and_settle():
    # Each measured step starts with dirty pages written out, so one step's writeback
    # is not billed to the next.
    os.sync()
    time.sleep(1)


def time_s3(bench: Bench) -> None:
    server = bench.start_s3()
    try:
        upload, upload_rss = bench.ours("backup_now")
        bench.forget_previous_restores()
        fetch, fetch_rss = bench.ours("restore_backup", "--latest", "--source", "s3", "--yes")
        bench.forget_previous_restores()
    finally:
        server.terminate()
        server.wait()
    print(f"{'backup + S3 upload':28}{upload:>5.1f}s{upload_rss:>8.0f} MB")
    print(f"{'restore from S3':28}{fetch:>5.1f}s{fetch_rss:>8.0f} MB")


def main():
    args = parse_args()
    bench = Bench(args)
    try:
        print(
            f"Generating {args.order_lines} order lines and {args.image_mb} MB of images in {bench.work} ..."
        )
        started = time.monotonic()
        bench.create()
        print(f"  done in {time.monotonic() - started:.0f} s")
        runs = {"raw backup": [], "backup": [], "raw restore": [], "restore": []}
        rss = {"backup": [], "restore": []}
        for _ in range(args.repeat):
            # Alternate baseline and ours, so a noisy neighbour hurts both alike.
            sync_and_settle()
            runs["raw backup"].append(bench.baseline_backup())
            sync_and_settle()
            seconds, peak = bench.ours("backup_now", "--no-upload")
            runs["backup"].append(seconds)
            rss["backup"].append(peak)
            runs["raw restore"].append(bench.baseline_restore())
            bench.forget_previous_restores()
            seconds, peak = bench.ours("restore_backup", "--latest", "--yes")
            runs["restore"].append(seconds)
            rss["restore"].append(peak)
            bench.forget_previous_restores()
        raw_backup, our_backup = median(runs["raw backup"]), median(runs["backup"])
        raw_restore, our_restore = median(runs["raw restore"]), median(runs["restore"])
        backup_rss, restore_rss = max(rss["backup"]), max(rss["restore"])
        print(
            "\nAll runs (s): "
            + "; ".join(f"{k} {', '.join(f'{v:.1f}' for v in vs)}" for k, vs in runs.items())
        )
        raw_mb = sum(f.stat().st_size for f in (bench.work / "raw").iterdir()) / 2**20
        print(
            f"\nData: {args.order_lines} order lines, {args.image_mb} MB images; "
            f"raw dump + tar {raw_mb:.0f} MB"
        )
        print(f"{'median':10}{'baseline':>10}{'ours':>10}{'ratio':>8}{'peak RSS':>11}")
        for label, raw, ours, peak in (
            ("backup", raw_backup, our_backup, backup_rss),
            ("restore", raw_restore, our_restore, restore_rss),
        ):
            print(f"{label:10}{raw:>9.1f}s{ours:>9.1f}s{ours / raw:>8.2f}{peak:>8.0f} MB")
        if args.s3:
            time_s3(bench)
    finally:
        bench.cleanup()


if __name__ == "__main__":
    main()

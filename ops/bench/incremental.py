#!/usr/bin/env python
"""Benchmark: incremental backup sets on the blob store, against the first full set.

On the data set of ops/bench/backup.py, but with images named by their SHA-256 as the catalog
names them, measures in one run, --repeat times (medians reported):
  first:  backup_now into an empty BACKUP_PATH (and, with --s3, an empty bucket)
  second: backup_now after 1 % (--new-percent) more images
as time, bytes written to BACKUP_PATH and bytes uploaded to S3, and prints the ratios
second / first (the issue's target: <= 0.05). With --days N it then makes N daily sets, the
images growing by --new-percent a day, and prints the backup volume's size against one full set
(target for 30 days: <= 1.5).

    .venv/bin/python ops/bench/incremental.py --image-mb 200 --s3
    .venv/bin/python ops/bench/incremental.py --image-mb 100 --days 30 --repeat 1

Works only on databases it creates and under --workdir; both are removed at the end.
"""

import argparse
import hashlib
import os
import shutil
import sys
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backup import Bench, sync_and_settle  # the sibling benchmark script


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--order-lines", type=int, default=20_000)
    parser.add_argument("--image-mb", type=int, default=200, help="total size of the generated images")
    parser.add_argument("--new-percent", type=float, default=1.0, help="new images before the second set")
    parser.add_argument(
        "--server", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL URL, no db"
    )
    parser.add_argument("--database", default="shop_bench_incremental")
    parser.add_argument("--workdir", type=Path, help="default: a new temporary directory")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--days", type=int, default=0, help="also make this many daily sets and report disk use"
    )
    parser.add_argument("--s3", action="store_true", help="also upload to a moto server and count its bytes")
    parser.add_argument("--keep", action="store_true")
    return parser.parse_args()


class IncrementalBench(Bench):
    def __init__(self, args):
        super().__init__(args)
        self.generated = 0

    def make_images(self, megabytes: float | None = None) -> list[Path]:
        """Incompressible bytes named by their SHA-256, in the catalog's layout."""
        remaining = int((self.args.image_mb if megabytes is None else megabytes) * 1024 * 1024)
        made = []
        while remaining > 0:
            size = min(remaining, 200_000 + (self.generated * 7919) % 1_800_000)  # 0.2 to 2 MB
            data = os.urandom(size)
            digest = hashlib.sha256(data).hexdigest()
            path = self.media / "products" / digest[:2] / f"{digest}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            made.append(path)
            remaining -= size
            self.generated += 1
        return made

    def s3_options(self) -> dict:
        return {
            "endpoint_url": self.s3_env["BACKUP_S3_ENDPOINT_URL"],
            "region_name": "us-east-1",
            "aws_access_key_id": self.s3_env["BACKUP_S3_ACCESS_KEY_ID"],
            "aws_secret_access_key": self.s3_env["BACKUP_S3_SECRET_ACCESS_KEY"],
        }

    def backup_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.backups.rglob("*") if path.is_file())

    def s3_bytes(self) -> int:
        if not self.s3_env.get("BACKUP_S3_BUCKET"):
            return 0
        import boto3

        client = boto3.client("s3", **self.s3_options())
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.s3_env["BACKUP_S3_BUCKET"])
        return sum(item["Size"] for page in pages for item in page.get("Contents", []))

    def empty_s3(self) -> None:
        if not self.s3_env.get("BACKUP_S3_BUCKET"):
            return
        import boto3

        bucket = boto3.resource("s3", **self.s3_options()).Bucket(self.s3_env["BACKUP_S3_BUCKET"])
        bucket.objects.all().delete()

    def measured_backup(self) -> tuple[float, int, int, float]:
        """(seconds, bytes written locally, bytes uploaded, peak RSS MB) of one backup_now."""
        local_before, s3_before = self.backup_bytes(), self.s3_bytes()
        sync_and_settle()
        upload = [] if self.s3_env.get("BACKUP_S3_BUCKET") else ["--no-upload"]
        seconds, rss = self.ours("backup_now", *upload)
        return seconds, self.backup_bytes() - local_before, self.s3_bytes() - s3_before, rss


def one_pair(bench: IncrementalBench) -> dict[str, tuple]:
    shutil.rmtree(bench.backups, ignore_errors=True)
    bench.empty_s3()
    first = bench.measured_backup()
    new = bench.make_images(bench.args.image_mb * bench.args.new_percent / 100)
    second = bench.measured_backup()
    for path in new:
        path.unlink()
    return {"first": first, "second": second}


def daily_sets(bench: IncrementalBench) -> None:
    shutil.rmtree(bench.backups, ignore_errors=True)
    bench.empty_s3()
    bench.measured_backup()
    one_set = bench.backup_bytes()
    for _ in range(bench.args.days - 1):
        bench.make_images(bench.args.image_mb * bench.args.new_percent / 100)
        bench.measured_backup()
    total = bench.backup_bytes()
    print(
        f"\n{bench.args.days} daily sets, images +{bench.args.new_percent:g} % a day: "
        f"{total / 2**20:.0f} MB on disk, one full set {one_set / 2**20:.0f} MB: "
        f"{total / one_set:.2f}x (target <= 1.5 for 30 days)"
    )


def print_medians(runs: list[dict], with_s3: bool) -> None:
    print(f"\n{'median':22}{'first':>12}{'second':>12}{'ratio':>8}")
    for index, label, unit in ((0, "time", "s"), (1, "written locally", "MB"), (2, "uploaded to S3", "MB")):
        if index == 2 and not with_s3:
            continue
        first = median(r["first"][index] for r in runs)
        second = median(r["second"][index] for r in runs)
        scale = 1 if unit == "s" else 2**20
        ratio = second / first if first else float("nan")
        print(f"{label:22}{first / scale:>10.1f}{unit:>2}{second / scale:>10.2f}{unit:>2}{ratio:>8.3f}")
    peaks = [max(r[which][3] for r in runs) for which in ("first", "second")]
    print(f"{'peak RSS':22}{peaks[0]:>10.0f}MB{peaks[1]:>10.0f}MB")


def main():
    args = parse_args()
    args.order_lines = max(args.order_lines, 4)
    bench = IncrementalBench(args)
    server = None
    try:
        print(
            f"Generating {args.order_lines} order lines and {args.image_mb} MB of images in {bench.work} ..."
        )
        bench.create()
        if args.s3:
            server = bench.start_s3()
        runs = [one_pair(bench) for _ in range(args.repeat)]
        print(
            "\nAll runs: "
            + "; ".join(f"first {r['first'][0]:.1f}s, second {r['second'][0]:.1f}s" for r in runs)
        )
        print_medians(runs, args.s3)
        if args.days:
            daily_sets(bench)
    finally:
        if server:
            server.terminate()
            server.wait()
        bench.cleanup()


if __name__ == "__main__":
    main()

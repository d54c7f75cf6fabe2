#!/usr/bin/env python
"""Point-in-time recovery on the Docker-less stack: the RPO and RTO of the drill, for a size.

Starts `python -m ops.runner` with PITR_ENABLED (pgBackRest, a fresh DATA_PATH, free loopback
ports, as tests/stack does), grows the database by --db-mb (a filler table written through
SQL, so it is WAL to archive and replay like orders) and the images by --images-mb (noisy PNGs
of about 1 MB uploaded through the admin, then a backup set so they are in the blob store),
takes a full physical backup, then places orders continuously for --seconds. At T it SIGKILLs
PostgreSQL, removes its data directory and deletes a tenth of the images, and runs
`python -m ops.runner restore --to T --yes`.

Prints: RPO (T minus the commit time of the oldest order that did not come back; 0 if none did
not) and RTO (from the restore command's start until /readyz answers 200 again), with the sizes.

    .venv/bin/python ops/bench/pitr.py                                  # 1 GB + 2 GB, as in issue 12
    .venv/bin/python ops/bench/pitr.py --db-mb 100 --images-mb 50 --archive-timeout 10
"""

import argparse
import io
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.shop_http import staff_session, upload_product  # noqa: E402
from tests.shop_load import Load  # noqa: E402
from tests.stack.runner import fresh_stack  # noqa: E402
from tests.stack.test_runner_pitr import run_runner  # noqa: E402


def noisy_png(size_mb: float) -> bytes:
    side = int((size_mb * 1024 * 1024 / 3) ** 0.5)
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def app_connection(stack) -> psycopg.Connection:
    """As the app role, which owns the shop's tables (the backup role's pg_dump reads them)."""
    return psycopg.connect(stack.config.database_url(), autocommit=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db-mb", type=int, default=1024)
    parser.add_argument("--images-mb", type=int, default=2048)
    parser.add_argument("--archive-timeout", type=int, default=60)
    parser.add_argument("--seconds", type=int, default=30, help="of orders before T")
    args = parser.parse_args()
    with fresh_stack(
        Path(tempfile.mkdtemp(prefix="pitr-bench-")) / "stack.log", graceful_stop=False
    ) as stack:
        stack.env.update(PITR_ENABLED="true", PITR_ARCHIVE_TIMEOUT=str(args.archive_timeout))
        stack.config = type(stack.config).from_environment(stack.env)
        stack.start(timeout=300)
        config = stack.config
        category_id = stack.add_staff_and_category()
        began = time.monotonic()
        with app_connection(stack) as conn:
            conn.execute(
                "CREATE TABLE bench_filler AS SELECT g AS id, repeat(md5(g::text), 28) AS payload "
                "FROM generate_series(1, %s) AS g",
                [args.db_mb * 1024],
            )
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        print(f"database: {size / 2**20:.0f} MB ({time.monotonic() - began:.0f} s to write)", flush=True)
        began = time.monotonic()
        staff = staff_session(stack.url)
        for number in range(args.images_mb):
            image = (f"bench-{number}.png", noisy_png(1), "image/png")
            response = upload_product(staff, stack.url, category_id, image, slug=f"bench-{number}")
            assert response.status_code == 302, response.text[:500]
        uploads = sum(p.stat().st_size for p in (config.data / "uploads").rglob("*") if p.is_file())
        print(f"images: {uploads / 2**20:.0f} MB ({time.monotonic() - began:.0f} s to upload)", flush=True)
        stack.manage("backup_now", "--no-upload")
        stack.manage(
            "shell", "-c", "from shop.backups.pitr.physical import run_physical_backup as b; b('full')"
        )
        # Only images in the backup set's blob store are deleted at T: those uploaded during the
        # load reach it with continuous image archiving (shop/backups/image_archive.py, separate work).
        images = sorted((config.data / "uploads" / "products").glob("??/*.png"))
        load = Load(stack.url, category_id)
        load.products.append("bench-0")
        with load:
            time.sleep(args.seconds)
            destroyed_at = datetime.now(UTC)
            os.kill(int((config.postgres_dir / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)
            subprocess.run(["rm", "-rf", str(config.postgres_dir)], check=True)
            for path in images[::10]:
                path.unlink()
        committed = list(load.orders)
        began = time.monotonic()
        restored = run_runner(
            stack, "restore", "--to", destroyed_at.isoformat(sep=" "), "--yes", timeout=7200
        )
        if restored.returncode != 0:
            print(restored.stdout + restored.stderr)
            return 1
        stack.wait_until_ready(600)
        rto = time.monotonic() - began
        with app_connection(stack) as conn:
            present = {row[0] for row in conn.execute("SELECT number FROM orders_order")}
        lost = [at for number, at in committed if number not in present]
        rpo = (destroyed_at - min(lost)).total_seconds() if lost else 0.0
        print(
            f"PITR: archive_timeout {args.archive_timeout} s; {len(committed)} orders in {args.seconds} s, "
            f"{len(lost)} lost; RPO {rpo:.1f} s; RTO {rto:.1f} s (restore command to /readyz 200); "
            f"{len(images[::10])} of {len(images)} images deleted at T and brought back"
        )
        print("restore output:\n  " + "\n  ".join(restored.stdout.strip().splitlines()[-6:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Benchmark: the storefront's pages against a bare Django view, under the same gunicorn.

Seeds a 1000-product catalog in a database of its own (BENCH_DATABASE, default
`shop_bench_storefront`, created and dropped on the PostgreSQL server of DATABASE_URL; never the
shop's), serves the shop with gunicorn and ops/gunicorn.conf.py (2 workers, production settings;
ops/bench/storefront_settings.py adds one URL, /bench/bare/, a view returning a string as long
as the category page through the same settings and middleware), drives it with wrk from this
second process, and prints per page: requests per second, p50/p99 latency and the CPU time of
the gunicorn processes per request, each also as a ratio to the bare view.

    .venv/bin/python ops/bench/storefront.py                        # 3 rounds of 5 s per page
    .venv/bin/python ops/bench/storefront.py --worker-class gthread --threads 4
    .venv/bin/python ops/bench/storefront.py --profile              # where a page's time goes

Needs wrk (Debian: `apt-get install wrk`), PostgreSQL (DATABASE_URL, a role that may create
databases) and Redis (REDIS_URL; the benchmark flushes its databases BENCH_REDIS_DBS, 13-15).
"""

import argparse
import collections
import contextlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
SETTINGS_MODULE = "ops.bench.storefront_settings"
PRODUCTS = 1000
CATEGORIES = 10
SEARCH_WORDS = ["mug", "teapot", "notebook", "poster", "lamp", "chair", "bowl", "vase", "candle", "rug"]
ADJECTIVES = ["Blue", "Red", "Oak", "Linen", "Stone", "Copper", "Glass", "Wool", "Paper", "Clay"]
# The django-oscar 4.2.1 figures quoted in issue 10 (measured then, not in this run).
OSCAR_REFERENCE = {"listing_ms_cpu": 393, "listing_queries": 126, "our_old_listing_ms_cpu": 11.5}


# --- the catalog ----------------------------------------------------------------------------


def seed_catalog() -> None:
    """1000 products in 10 categories, each with one image row (names only: pages show URLs)."""
    from decimal import Decimal

    from shop.catalog.models import Category, Product, ProductImage

    categories = Category.objects.bulk_create(
        Category(name=f"{word.title()}s", slug=f"{word}s", position=i) for i, word in enumerate(SEARCH_WORDS)
    )
    products = Product.objects.bulk_create(
        Product(
            category=categories[n % CATEGORIES],
            name=f"{ADJECTIVES[n // CATEGORIES % len(ADJECTIVES)]} {SEARCH_WORDS[n % CATEGORIES]} {n}",
            slug=f"product-{n}",
            sku=f"BENCH-{n:05d}",
            description=f"A {SEARCH_WORDS[n % CATEGORIES]} made with care. Item {n} of the benchmark.",
            price=Decimal(500 + n * 7 % 9000) / 100,
            stock=n % 40,
        )
        for n in range(PRODUCTS)
    )
    ProductImage.objects.bulk_create(
        ProductImage(
            product=product,
            image=f"products/bench{product.pk:05d}.png",
            thumbnail_small=f"products/bench{product.pk:05d}-small.webp",
            thumbnail_large=f"products/bench{product.pk:05d}-large.webp",
            alt_text=product.name,
            width=900,
            height=900,
        )
        for product in products
    )


def page_paths() -> dict[str, list[str]]:
    """What each page's load rotates through: every listing page, every product, every word."""
    pages_per_category = -(-PRODUCTS // CATEGORIES // 12)
    return {
        "category": [
            f"/category/{w}s/?page={p}" for w in SEARCH_WORDS for p in range(1, pages_per_category + 1)
        ],
        "search": [f"/search/?q={word}" for word in SEARCH_WORDS],
        "product": [f"/product/product-{n}/" for n in range(PRODUCTS)],
    }


# --- the environment: database, Redis, settings ------------------------------------------------


def with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


@dataclass
class BenchEnvironment:
    server_url: str  # the PostgreSQL server, any database
    database: str
    redis_url: str
    workdir: Path
    code: Path = ROOT  # the checkout served (another version: --code)

    @property
    def database_url(self) -> str:
        return with_path(self.server_url, f"/{self.database}")

    def environ(self, **extra: str) -> dict[str, str]:
        caller_only = ("REDIS_", "DATABASE_URL", "CELERY_", "DJANGO_")
        env = {name: value for name, value in os.environ.items() if not name.startswith(caller_only)}
        env.update(
            DJANGO_SETTINGS_MODULE=SETTINGS_MODULE,
            DJANGO_READ_DOT_ENV="false",
            DJANGO_DEBUG="false",
            DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
            DJANGO_ALLOWED_HOSTS="127.0.0.1",
            DJANGO_SECURE_SSL_REDIRECT="false",
            DJANGO_SECURE_COOKIES="false",
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            REDIS_DB_BROKER="13",
            REDIS_DB_CACHE="14",
            REDIS_DB_SESSIONS="15",
            CELERY_TASK_ALWAYS_EAGER="true",
            MEDIA_ROOT=str(self.workdir / "uploads"),
            STATIC_ROOT=str(self.workdir / "static"),
            LOG_DIR=str(self.workdir / "logs"),
            BACKUP_PATH=str(self.workdir / "backups"),
            PYTHONPATH=str(self.code),
            **extra,
        )
        return env

    def admin_sql(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(with_path(self.server_url, "/postgres"), autocommit=True) as conn:
            conn.execute(statement)

    def flush_redis(self) -> None:
        import redis

        for db in (13, 14, 15):
            client = redis.Redis.from_url(with_path(self.redis_url, f"/{db}"))
            client.flushdb()
            client.close()

    def manage(self, *args: str) -> None:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=self.code,
            env=self.environ(),
            capture_output=True,
            text=True,
        )
        if result.returncode:
            raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")

    def create(self) -> None:
        self.drop()
        self.admin_sql(f'CREATE DATABASE "{self.database}"')
        self.manage("migrate", "--noinput")
        self.manage("collectstatic", "--noinput", "--verbosity", "0")
        self.manage("shell", "-c", "from ops.bench.storefront import seed_catalog; seed_catalog()")
        self.flush_redis()

    def drop(self) -> None:
        self.admin_sql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


# --- gunicorn and its CPU time ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def proc_stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def gunicorn_cpu_seconds(master: int) -> float:
    """CPU time of the gunicorn master, its live workers, and the workers it has reaped
    (max_requests restarts them): what serving has cost so far."""
    fields = proc_stat(master)
    # After ")": state ppid ... utime(12) stime(13) cutime(14) cstime(15), 0-based from state.
    total = sum(int(value) for value in fields[11:15])
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                child = proc_stat(int(entry.name))
                if int(child[1]) == master:
                    total += int(child[11]) + int(child[12])
    return total / CLOCK_TICKS


@contextlib.contextmanager
def served(bench: BenchEnvironment, worker_class: str, threads: int, bare_bytes: int):
    port = free_port()
    env = bench.environ(
        GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="2", BENCH_BARE_BYTES=str(bare_bytes)
    )
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "--config", str(bench.code / "ops" / "gunicorn.conf.py"),
        "--worker-class", worker_class, "--threads", str(threads),
        "--access-logfile", "-",
        # No recycling: a worker's boot (a second of CPU) would be billed to whichever page ran then.
        "--max-requests", "0",
        "shop.wsgi:application",
    ]  # fmt: skip
    log = (bench.workdir / "gunicorn.log").open("a")
    process = subprocess.Popen(command, cwd=bench.code, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(url, process)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def wait_until_serving(url: str, process: subprocess.Popen) -> None:
    import requests

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited with {process.returncode}; see its log")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}/bench/bare/", timeout=5).status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit("gunicorn did not answer within 60 s")


# --- load with wrk ------------------------------------------------------------------------------

WRK_SCRIPT = """
paths = {%s}
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, paths[(counter %% #paths) + 1])
end
"""


@dataclass
class Run:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_seconds: float
    bad_responses: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.cpu_seconds / self.requests


def milliseconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    value, unit = match.groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60_000}[unit]


def run_wrk(url: str, paths: list[str], seconds: float, connections: int, master: int, workdir: Path) -> Run:
    script = workdir / "paths.lua"
    script.write_text(WRK_SCRIPT % ", ".join(f'"{p}"' for p in paths))
    cpu_before = gunicorn_cpu_seconds(master)
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    )
    cpu = gunicorn_cpu_seconds(master) - cpu_before
    out = result.stdout
    if "Latency Distribution" not in out:
        raise SystemExit(f"wrk printed no latency distribution:\n{out}\n{result.stderr}")
    total = re.search(r"(\d+) requests in ([\d.]+)(ms|s)", out)
    elapsed = float(total.group(2)) / (1000 if total.group(3) == "ms" else 1)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return Run(
        requests=int(total.group(1)),
        seconds=elapsed,
        p50_ms=milliseconds(percentile(out, 50)),
        p99_ms=milliseconds(percentile(out, 99)),
        cpu_seconds=cpu,
        bad_responses=(int(bad.group(1)) if bad else 0) + (sum(map(int, errors.groups())) if errors else 0),
    )


def percentile(wrk_output: str, percent: int) -> str:
    distribution = wrk_output.split("Latency Distribution", 1)[1]
    return re.search(rf"^\s*{percent}%\s+(\S+)", distribution, flags=re.MULTILINE).group(1)


def median_run(runs: list[Run]) -> Run:
    """The round with the median requests per second (the machine is shared: rounds differ)."""
    return sorted(runs, key=lambda run: run.rps)[len(runs) // 2]


# --- profile ------------------------------------------------------------------------------------


def profile_pages(bench: BenchEnvironment, requests_per_page: int) -> None:
    """In this process, per page: CPU per request and queries (unprofiled, warm), then cProfile's
    heaviest functions (cumulative and own time)."""
    os.environ.update(bench.environ())
    sys.path.insert(0, str(bench.code))
    import cProfile
    import pstats

    import django

    django.setup()
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import connection

    handler = WSGIHandler()
    queries = []
    for page, paths in {"bare view": ["/bench/bare/"], **page_paths()}.items():
        paths = (paths * requests_per_page)[:requests_per_page]
        for path in paths:
            call_wsgi(handler, path)  # warm: connections, templates, the fragment cache
        with connection.execute_wrapper(
            lambda execute, sql, *args: queries.append(sql) or execute(sql, *args)
        ):
            queries.clear()
            call_wsgi(handler, paths[0])
            per_request = len(queries)
        started = time.process_time()
        for path in paths:
            call_wsgi(handler, path)
        cpu_ms = 1000 * (time.process_time() - started) / len(paths)
        print(f"\n=== {page}: {cpu_ms:.2f} ms CPU per request (unprofiled, warm), {per_request} queries")
        profiler = cProfile.Profile()
        profiler.enable()
        for path in paths:
            call_wsgi(handler, path)
        profiler.disable()
        stats = pstats.Stats(profiler).strip_dirs()
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(15)


def call_wsgi(handler, path: str) -> bytes:
    from django.test.client import RequestFactory

    path, _, query = path.partition("?")
    environ = RequestFactory()._base_environ(PATH_INFO=path, QUERY_STRING=query, SERVER_NAME="127.0.0.1")
    status = []
    body = b"".join(handler(environ, lambda s, headers, exc_info=None: status.append(s)))
    if not status[0].startswith("200"):
        raise SystemExit(f"{path}: {status[0]}")
    return body


# --- main ---------------------------------------------------------------------------------------


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5, help="length of one round per page (5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per page; the median is printed (3)")
    parser.add_argument("--connections", type=int, default=4, help="concurrent wrk connections (4)")
    parser.add_argument("--worker-class", default="sync", choices=["sync", "gthread"], help="(sync)")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker, gthread only (1)")
    parser.add_argument("--profile", action="store_true", help="profile in-process instead of load")
    parser.add_argument("--profile-requests", type=int, default=50, help="requests per page profiled (50)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database afterwards")
    parser.add_argument(
        "--code",
        type=Path,
        default=ROOT,
        help="the checkout to serve (default: this one; e.g. an export of main)",
    )
    return parser.parse_args()


def bench_environment(workdir: Path, code: Path) -> BenchEnvironment:
    for name in ("__init__.py", "storefront.py", "storefront_settings.py", "storefront_urls.py"):
        target = code / "ops" / "bench" / name
        if not target.exists():  # an older checkout: bring the benchmark's own files along
            shutil.copy(ROOT / "ops" / "bench" / name, target)
    return BenchEnvironment(
        code=code.resolve(),
        server_url=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        database=os.environ.get("BENCH_DATABASE", "shop_bench_storefront"),
        redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"),
        workdir=workdir,
    )


def first_visits(url: str, paths: list[str], master: int) -> float:
    """Every path once (4 at a time): each fragment rendered and stored, as after a catalog
    change. Returns the CPU milliseconds per request this cost."""
    import requests

    cpu_before = gunicorn_cpu_seconds(master)
    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(lambda path: requests.get(f"{url}{path}", timeout=60).status_code, paths))
    if set(statuses) != {200}:
        raise SystemExit(f"first visits answered {collections.Counter(statuses)}")
    return 1000 * (gunicorn_cpu_seconds(master) - cpu_before) / len(paths)


def measure(bench: BenchEnvironment, args) -> tuple[dict[str, Run], dict[str, float]]:
    import requests

    paths = page_paths()
    with served(bench, args.worker_class, args.threads, bare_bytes=0) as (url, _):
        bare_bytes = len(requests.get(f"{url}{paths['category'][0]}", timeout=10).content)
    targets = {"bare view": ["/bench/bare/"], **paths}
    runs: dict[str, list[Run]] = {name: [] for name in targets}
    with served(bench, args.worker_class, args.threads, bare_bytes) as (url, master):
        cold = {name: first_visits(url, target_paths, master) for name, target_paths in targets.items()}
        for target_paths in targets.values():  # warm-up: both workers, connections
            run_wrk(url, target_paths, 2, args.connections, master, bench.workdir)
        for _ in range(args.rounds):
            for name, target_paths in targets.items():
                runs[name].append(
                    run_wrk(url, target_paths, args.seconds, args.connections, master, bench.workdir)
                )
    print(f"bare view body: {bare_bytes} bytes (the size of {paths['category'][0]})")
    return {name: median_run(name_runs) for name, name_runs in runs.items()}, cold


def report(results: dict[str, Run], cold: dict[str, float], args) -> None:
    bare = results["bare view"]
    print(
        f"\n{PRODUCTS} products, gunicorn 2 workers ({args.worker_class}, threads {args.threads}), "
        f"wrk {args.connections} connections, median of {args.rounds} rounds of {args.seconds:g} s"
    )
    header = f"{'page':<10} {'req/s':>8} {'ratio':>6} {'p50 ms':>7} {'ratio':>6} {'p99 ms':>7} {'ratio':>6}"
    print(header + f" {'CPU ms/req':>10} {'ratio':>6} {'bad':>4} {'first visit CPU ms':>18}")
    for name, run in results.items():
        print(
            f"{name:<10} {run.rps:>8.0f} {run.rps / bare.rps:>6.2f} {run.p50_ms:>7.2f} "
            f"{run.p50_ms / bare.p50_ms:>6.2f} {run.p99_ms:>7.2f} {run.p99_ms / bare.p99_ms:>6.2f} "
            f"{run.cpu_ms_per_request:>10.2f} {run.cpu_ms_per_request / bare.cpu_ms_per_request:>6.2f} "
            f"{run.bad_responses:>4} {cold[name]:>18.2f}"
        )
    listing = results["category"]
    oscar = OSCAR_REFERENCE
    print(
        "\nReference, NOT measured in this run (quoted from issue 10, same machine class, 2 sync workers):\n"
        f"  django-oscar 4.2.1 category listing: {oscar['listing_ms_cpu']} ms CPU per page, "
        f"{oscar['listing_queries']} queries\n"
        f"  this shop's listing before issue 10: {oscar['our_old_listing_ms_cpu']} ms CPU per page\n"
        f"  => our listing now costs {listing.cpu_ms_per_request:.2f} ms CPU per page here: "
        f"{oscar['listing_ms_cpu'] / listing.cpu_ms_per_request:.0f}x less than oscar's quoted figure"
    )


def main() -> int:
    args = parse_args()
    if not args.profile and shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: `apt-get install wrk` (Debian/Ubuntu), `brew install wrk`.")
    workdir = Path(tempfile.mkdtemp(prefix="bench-storefront-"))
    (workdir / "uploads").mkdir()
    bench = bench_environment(workdir, args.code)
    try:
        print(f"seeding {PRODUCTS} products into database {bench.database} ...", flush=True)
        bench.create()
        if args.profile:
            profile_pages(bench, args.profile_requests)
        else:
            report(*measure(bench, args), args)
    finally:
        if not args.keep:
            bench.drop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

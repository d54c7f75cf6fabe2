"""The shop served by gunicorn (production settings) on a PostgreSQL cluster and a redis-server
of its own, on free loopback ports, so that a test or a benchmark can stop and start them
without touching the machine's shared services.

Used by tests/test_outage.py and ops/bench/outage.py.
"""

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.stack.runner import free_ports, make_data_root

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), default=None)
AVAILABLE = POSTGRES_BIN is not None and shutil.which("redis-server") is not None


def as_postgres(args: list[str]) -> list[str]:
    # PostgreSQL's server refuses to run as root.
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class PrivatePostgres:
    def __init__(self, root: Path, port: int):
        self.data, self.log, self.port = root / "postgres", root / "postgres.log", port
        self.data.mkdir(mode=0o700)
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.data, user.pw_uid, user.pw_gid)
            self.log.touch()
            os.chown(self.log, user.pw_uid, user.pw_gid)
        initdb = [str(POSTGRES_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"]
        subprocess.run(as_postgres([*initdb, "--no-sync"]), check=True, capture_output=True)

    def pg_ctl(self, *args: str) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' -c fsync=off"
        pg_ctl = [str(POSTGRES_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options]
        subprocess.run(as_postgres([*pg_ctl, "-w", *args]), check=True, capture_output=True)

    def start(self):
        self.pg_ctl("start")

    def stop(self):
        self.pg_ctl("stop", "-m", "fast")

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


class PrivateRedis:
    def __init__(self, root: Path, port: int):
        self.dir, self.port, self.process = root / "redis", port, None
        self.dir.mkdir()

    def start(self):
        # Append-only file on, as in the stack: sessions (carts) survive the restart.
        options = {"bind": "127.0.0.1", "port": self.port, "dir": self.dir, "save": "", "appendonly": "yes"}
        options["logfile"] = self.dir / "redis.log"
        arguments = [item for name, value in options.items() for item in (f"--{name}", str(value))]
        self.process = subprocess.Popen(["redis-server", *arguments])
        ping = ["redis-cli", "-p", str(self.port), "ping"]
        deadline = time.monotonic() + 10
        while subprocess.run(ping, capture_output=True, text=True, check=False).stdout.strip() != "PONG":
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.1)

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@dataclass
class ServedShop:
    url: str
    postgres: PrivatePostgres
    redis: PrivateRedis
    log: Path
    gunicorn: subprocess.Popen

    def service(self, name: str):
        return {"postgres": self.postgres, "redis": self.redis}[name]

    def read_log(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


SEED = (
    "from shop.catalog.models import Category, Product; "
    "c = Category.objects.create(name='Mugs', slug='mugs'); "
    "Product.objects.create(category=c, name='Blue mug', slug='blue-mug', sku='MUG-1', price='9.90', stock=5)"
)


@contextlib.contextmanager
def served_shop(workers: int = 1, code: Path = ROOT, **settings: str):
    """Yield a ServedShop: one product ('Blue mug', pk 1) in a migrated database."""
    root = make_data_root()
    app_port, postgres_port, redis_port = free_ports(3)
    postgres, redis = PrivatePostgres(root, postgres_port), PrivateRedis(root, redis_port)
    caller_only = ("REDIS_", "DATABASE_URL", "CELERY_")
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith(caller_only)},
        "DJANGO_READ_DOT_ENV": "false",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DJANGO_SECURE_COOKIES": "false",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{postgres_port}/postgres",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}",
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "MEDIA_ROOT": str(root / "uploads"),
        "STATIC_ROOT": str(root / "static"),
        "LOG_DIR": str(root / "logs"),
        "BACKUP_PATH": str(root / "backups"),
        **settings,
    }
    (root / "uploads").mkdir()
    gunicorn = None
    try:
        postgres.start()
        redis.start()
        manage = [sys.executable, "manage.py"]
        for command in (["migrate", "--noinput"], ["collectstatic", "--noinput", "--verbosity", "0"]):
            subprocess.run([*manage, *command], cwd=code, env=env, check=True, capture_output=True)
        subprocess.run([*manage, "shell", "-c", SEED], cwd=code, env=env, check=True, capture_output=True)
        bind = f"127.0.0.1:{app_port}"
        gunicorn = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "--bind", bind, "--workers", str(workers),
             "--timeout", "60", "shop.wsgi:application"],
            cwd=code,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"http://{bind}"
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/healthz", timeout=10).status_code == 200:
                    break
            if gunicorn.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start")
            time.sleep(0.2)
        yield ServedShop(url, postgres, redis, root / "logs" / "shop.log", gunicorn)
    finally:
        if gunicorn is not None:
            gunicorn.terminate()
            gunicorn.wait(timeout=20)
        redis.stop()
        if postgres.running:
            postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


def customer_with_cart(url: str) -> requests.Session:
    """A browser session with two Blue mugs in its cart."""
    customer = requests.Session()
    customer.get(f"{url}/product/blue-mug/", timeout=10).raise_for_status()
    form = {"quantity": 2, "csrfmiddlewaretoken": customer.cookies["csrftoken"]}
    response = customer.post(f"{url}/cart/add/1/", form, timeout=10)
    if response.status_code != 200 or "Blue mug" not in response.text:
        raise RuntimeError(f"could not fill a cart: {response.status_code} {response.text[:300]}")
    return customer

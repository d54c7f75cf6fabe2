"""PostgreSQL and Redis outages, for real: the shop answers 503 with Retry-After while one is
down, logs each outage once, and recovers by itself when it is back.

The test has a PostgreSQL cluster and a redis-server of its own (never the machine's shared
ones, which it stops and starts) and serves the shop with gunicorn in production mode.
"""

import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.stack.runner import free_ports, make_data_root

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), default=None)

pytestmark = pytest.mark.skipif(
    POSTGRES_BIN is None or shutil.which("redis-server") is None,
    reason="needs the PostgreSQL server binaries and redis-server",
)


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
        subprocess.run(
            as_postgres(
                [
                    str(POSTGRES_BIN / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )

    def pg_ctl(self, *args: str) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' -c fsync=off"
        subprocess.run(
            as_postgres(
                [
                    str(POSTGRES_BIN / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log),
                    "-o",
                    options,
                    "-w",
                    *args,
                ]
            ),
            check=True,
            capture_output=True,
        )

    def start(self):
        self.pg_ctl("start")

    def stop(self):
        self.pg_ctl("stop", "-m", "fast")


class PrivateRedis:
    def __init__(self, root: Path, port: int):
        self.dir, self.port, self.process = root / "redis", port, None
        self.dir.mkdir()

    def start(self):
        # Append-only file on, as in the stack: sessions (carts) survive the restart.
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--logfile",
                str(self.dir / "redis.log"),
            ],
        )
        deadline = time.monotonic() + 10
        while (
            subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True, check=False
            ).stdout.strip()
            != "PONG"
        ):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture(scope="module")
def shop():
    """gunicorn serving the shop (production settings) on a private PostgreSQL and Redis."""
    root = make_data_root()
    app_port, postgres_port, redis_port = free_ports(3)
    postgres, redis = PrivatePostgres(root, postgres_port), PrivateRedis(root, redis_port)
    gunicorn = None
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_URL", "CELERY_"))},
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
        "SERVICE_UNAVAILABLE_RETRY_AFTER": "7",
    }
    (root / "uploads").mkdir()
    try:
        postgres.start()
        redis.start()
        manage = [sys.executable, "manage.py"]
        for command in (["migrate", "--noinput"], ["collectstatic", "--noinput", "--verbosity", "0"]):
            subprocess.run([*manage, *command], cwd=ROOT, env=env, check=True, capture_output=True)
        seed = (
            "from shop.catalog.models import Category, Product; "
            "c = Category.objects.create(name='Mugs', slug='mugs'); "
            "Product.objects.create(category=c, name='Blue mug', slug='blue-mug', sku='MUG-1', "
            "price='9.90', stock=5)"
        )
        subprocess.run([*manage, "shell", "-c", seed], cwd=ROOT, env=env, check=True, capture_output=True)
        gunicorn = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "--bind",
                f"127.0.0.1:{app_port}",
                "--workers",
                "1",
                "--timeout",
                "60",
                "shop.wsgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{app_port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/healthz", timeout=10).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert gunicorn.poll() is None, "gunicorn exited"
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.2)
        yield {
            "url": url,
            "postgres": postgres,
            "redis": redis,
            "log": root / "logs" / "shop.log",
            "gunicorn": gunicorn,
        }
    finally:
        if gunicorn is not None:
            gunicorn.terminate()
            gunicorn.wait(timeout=20)
        redis.stop()
        if (postgres.data / "postmaster.pid").exists():
            postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


def customer_with_cart(url: str) -> requests.Session:
    customer = requests.Session()
    customer.get(f"{url}/product/blue-mug/", timeout=10).raise_for_status()
    response = customer.post(
        f"{url}/cart/add/1/",
        {"quantity": 2, "csrfmiddlewaretoken": customer.cookies["csrftoken"]},
        timeout=10,
    )
    assert response.status_code == 200, response.text  # the cart page, after the redirect
    assert "Blue mug" in response.text
    return customer


def assert_unavailable(response: requests.Response) -> None:
    assert response.status_code == 503, (response.status_code, response.text[:500])
    assert response.headers["Retry-After"] == "7"
    assert "Back in a moment" in response.text
    assert "Django Shop" in response.text  # the shop's own page, from the base template
    assert "sessionid" not in response.headers.get("Set-Cookie", "")  # the cart is kept


def wait_until_served(url: str, customer: requests.Session) -> requests.Response:
    deadline = time.monotonic() + 20
    while True:
        response = customer.get(f"{url}/cart/", timeout=10)
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        time.sleep(0.25)


def read_log(log: Path) -> str:
    return log.read_text() if log.exists() else ""


def wait_for_log(log: Path, pattern: str) -> str:
    deadline = time.monotonic() + 15
    while not re.search(pattern, text := read_log(log)):
        assert time.monotonic() < deadline, f"{pattern!r} never logged:\n{text[-3000:]}"
        time.sleep(0.5)
    return text


@pytest.mark.parametrize(
    ("service", "name"),
    [("postgres", "PostgreSQL"), ("redis", "Redis")],
)
def test_an_outage_answers_503_and_the_shop_recovers_by_itself(shop, service, name):
    url, log = shop["url"], shop["log"]
    customer = customer_with_cart(url)
    log_before = read_log(log)

    shop[service].stop()
    try:
        for path in ("/", "/cart/", "/product/blue-mug/", "/orders/checkout/"):
            for _ in range(3):
                assert_unavailable(customer.get(f"{url}{path}", timeout=15))
        assert_unavailable(
            customer.post(
                f"{url}/cart/add/1/",
                {"quantity": 1, "csrfmiddlewaretoken": customer.cookies["csrftoken"]},
                timeout=15,
            )
        )
        ready = requests.get(f"{url}/readyz", timeout=15)
        assert ready.status_code == 503
        assert ready.headers["Content-Type"] == "application/json"
        assert ready.headers["Retry-After"] == "7"
        assert ready.json()["status"] == "unavailable"
        key = "database" if service == "postgres" else "redis"
        assert ready.json()["checks"][key].startswith("error")
        assert requests.get(f"{url}/healthz", timeout=15).status_code == 200  # alive, not ready
    finally:
        shop[service].start()

    response = wait_until_served(url, customer)
    assert response.status_code == 200, response.text[:500]
    assert "Blue mug" in response.text  # the same cart, read again from Redis
    assert requests.get(f"{url}/readyz", timeout=15).status_code == 200
    assert shop["gunicorn"].poll() is None  # nothing was restarted
    text = wait_for_log(log, rf"{name} is reachable again")
    during = text[len(log_before) :]
    assert len(re.findall(rf"ERROR .*{name} is unreachable", during)) == 1, during
    assert len(re.findall(rf"{name} is reachable again", during)) == 1, during
    assert "Traceback" not in during, during
    assert "Internal Server Error" not in during, during


def test_only_errors_that_mean_unreachable_count_as_an_outage():
    import psycopg.errors
    import redis.exceptions
    from django.db import IntegrityError, InterfaceError, OperationalError

    from shop.outage import service_of

    def django_error(cls, cause):
        error = cls(str(cause))
        error.__cause__ = cause
        return error

    refused = psycopg.OperationalError("connection failed: Connection refused")
    shutting_down = psycopg.errors.AdminShutdown("terminating connection due to administrator command")
    assert service_of(django_error(OperationalError, refused)) == "database"
    assert service_of(django_error(OperationalError, shutting_down)) == "database"
    assert service_of(InterfaceError("connection already closed")) == "database"
    assert service_of(redis.exceptions.ConnectionError("Connection refused")) == "redis"
    assert service_of(redis.exceptions.TimeoutError("Timeout reading from socket")) == "redis"
    # Errors of one query on a working server stay what they are (a 500, logged with traceback).
    deadlock = psycopg.errors.DeadlockDetected("deadlock detected")
    assert service_of(django_error(OperationalError, deadlock)) is None
    assert service_of(django_error(IntegrityError, psycopg.errors.UniqueViolation("dup"))) is None
    assert service_of(redis.exceptions.ResponseError("WRONGTYPE")) is None


def test_an_outage_raised_in_a_middleware_also_answers_503(rf, settings):
    """Django's handler500 (the session saved after the view, for instance): 503, not 500."""
    import redis.exceptions

    from shop.outage import outages, server_error

    settings.SERVICE_UNAVAILABLE_RETRY_AFTER = 3
    try:
        try:
            raise redis.exceptions.ConnectionError("Connection refused")
        except redis.exceptions.ConnectionError:
            response = server_error(rf.get("/cart/"))
        assert response.status_code == 503
        assert response["Retry-After"] == "3"
        assert "Back in a moment" in response.content.decode()
        assert response._has_been_logged  # Django's request logger adds no traceback
        try:
            raise ValueError("a bug")
        except ValueError:
            assert server_error(rf.get("/cart/")).status_code == 500
    finally:
        outages.reset()


def test_the_outage_page_needs_neither_database_nor_redis(rf, settings):
    """No `db` fixture: pytest-django refuses any query here; Redis points at a closed port."""
    from shop.outage import unavailable_response

    settings.CACHES = {
        alias: {**config, "LOCATION": "redis://127.0.0.1:1/0"} for alias, config in settings.CACHES.items()
    }
    page = unavailable_response(rf.get("/"), "database").content.decode()
    probe = unavailable_response(rf.get("/readyz"), "database")

    assert "Back in a moment" in page
    assert "Cart (" not in page  # no header that would need the session
    assert probe["Content-Type"] == "application/json"

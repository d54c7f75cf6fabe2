"""PostgreSQL and Redis outages, for real: the shop answers 503 with Retry-After while one is
down, logs each outage once, and recovers by itself when it is back.

The test has a PostgreSQL cluster and a redis-server of its own (never the machine's shared
ones, which it stops and starts) and serves the shop with gunicorn in production mode.
"""

import re
import time

import pytest
import requests

from tests.private_services import AVAILABLE, customer_with_cart, served_shop

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="needs the PostgreSQL server binaries and redis-server")


@pytest.fixture(scope="module")
def shop():
    with served_shop(SERVICE_UNAVAILABLE_RETRY_AFTER="7") as served:
        yield served


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


def wait_for_log(shop, pattern: str) -> str:
    deadline = time.monotonic() + 15
    while not re.search(pattern, text := shop.read_log()):
        assert time.monotonic() < deadline, f"{pattern!r} never logged:\n{text[-3000:]}"
        time.sleep(0.5)
    return text


@pytest.mark.parametrize(
    ("service", "name"),
    [("postgres", "PostgreSQL"), ("redis", "Redis")],
)
def test_an_outage_answers_503_and_the_shop_recovers_by_itself(shop, service, name):
    url = shop.url
    customer = customer_with_cart(url)
    log_before = shop.read_log()

    shop.service(service).stop()
    try:
        for path in ("/", "/cart/", "/product/blue-mug/", "/orders/checkout/"):
            for _ in range(3):
                response = customer.get(f"{url}{path}", timeout=15)
                if service == "postgres" and path == "/product/blue-mug/":
                    # Seen before the outage: served from cached fragments (shop/catalog/cache.py),
                    # which need no query; the catalog cannot change while PostgreSQL is down.
                    assert response.status_code == 200
                    assert "Blue mug" in response.text
                else:
                    assert_unavailable(response)
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
        shop.service(service).start()

    response = wait_until_served(url, customer)
    assert response.status_code == 200, response.text[:500]
    assert "Blue mug" in response.text  # the same cart, read again from Redis
    assert requests.get(f"{url}/readyz", timeout=15).status_code == 200
    assert shop.gunicorn.poll() is None  # nothing was restarted
    text = wait_for_log(shop, rf"{name} is reachable again")
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

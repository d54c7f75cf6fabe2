"""While PostgreSQL or Redis cannot be reached: 503 with Retry-After, and one log line per outage.

A storefront request that fails because a service is down gets a short page (JSON for the
probes) instead of a 500, and the process logs the outage when it begins and when it ends,
not a traceback per request. Nothing has to restart: every request tries the service again,
and the first one that reaches it answers normally.

Three places turn an outage into a 503, so that it is caught wherever it surfaces:
`ServiceOutageMiddleware.process_exception` (views and template rendering, where sessions,
carts and queries are read), `server_error` (the project's handler500: an exception raised in
a middleware, e.g. the session being saved after the view) and `/readyz` (its own checks).
"""

import logging
import sys
import threading
import time

import psycopg
import redis.exceptions
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils.cache import add_never_cache_headers
from django.views import defaults

logger = logging.getLogger(__name__)

SERVICE_NAMES = {"database": "PostgreSQL", "redis": "Redis"}

# SQLSTATEs that mean "the server is not there for us", as opposed to an error in one query
# (a deadlock, a lock or statement timeout are OperationalErrors too, and stay 500s).
UNREACHABLE_SQLSTATE_PREFIXES = ("08", "57P01", "57P02", "57P03")

# How often a process that has seen an outage probes the service again on its own (after a
# request that did not need it), so that the recovery is logged even on a quiet shop.
RECOVERY_PROBE_INTERVAL = 2.0


def service_of(exception: BaseException) -> str | None:
    """The service ("database" or "redis") that `exception` says cannot be reached, or None."""
    if isinstance(exception, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return "redis"
    if isinstance(exception, InterfaceError):
        return "database"  # the connection is closed or broken
    if isinstance(exception, OperationalError):
        cause = exception.__cause__
        sqlstate = getattr(cause, "sqlstate", None)
        if sqlstate is None and isinstance(cause, psycopg.OperationalError):
            return "database"  # no SQLSTATE: the connection failed or was lost
        if sqlstate and sqlstate.startswith(UNREACHABLE_SQLSTATE_PREFIXES):
            return "database"
    return None


class OutageLog:
    """Per process: which services are down since when, logged once when an outage begins
    and once when it ends."""

    def __init__(self):
        self._lock = threading.Lock()
        self._down: dict[str, dict] = {}

    def failed(self, service: str, exception: BaseException) -> None:
        with self._lock:
            state = self._down.get(service)
            if state is not None:
                state["requests"] += 1
                return
            self._down[service] = {"since": time.monotonic(), "requests": 1, "probed": time.monotonic()}
        logger.error(
            "%s is unreachable (%s: %s); answering 503 until it is back",
            SERVICE_NAMES[service],
            exception.__class__.__name__,
            str(exception).strip().splitlines()[0] if str(exception).strip() else "",
        )

    def recovered(self, service: str) -> None:
        with self._lock:
            state = self._down.pop(service, None)
        if state is not None:
            logger.warning(
                "%s is reachable again after %.1f s (%d failed requests in this process)",
                SERVICE_NAMES[service],
                time.monotonic() - state["since"],
                state["requests"],
            )

    def is_down(self, service: str) -> bool:
        return service in self._down

    def probe_due(self) -> list[str]:
        """Services down here whose probe is due now (each at most every few seconds)."""
        now = time.monotonic()
        due = []
        with self._lock:
            for service, state in self._down.items():
                if now - state["probed"] >= RECOVERY_PROBE_INTERVAL:
                    state["probed"] = now
                    due.append(service)
        return due

    def reset(self) -> None:
        with self._lock:
            self._down.clear()


outages = OutageLog()


def probe(service: str) -> bool:
    from shop.health import check_database, check_redis

    check = {"database": check_database, "redis": check_redis}[service]
    try:
        check()
    except Exception as exc:  # a probe: any failure means "still down"
        if service_of(exc) is None:
            logger.warning("%s probe failed: %s: %s", SERVICE_NAMES[service], exc.__class__.__name__, exc)
        return False
    outages.recovered(service)
    return True


def wants_json(request) -> bool:
    return request.path in ("/readyz", "/healthz") or "application/json" in request.headers.get("Accept", "")


def unavailable_response(request, service: str) -> HttpResponse:
    """The 503 itself: rendered from a template and settings only, no database, session or Redis."""
    if wants_json(request):
        response = JsonResponse({"status": "unavailable", "unreachable": service}, status=503)
    else:
        page = render_to_string(
            "503.html",
            {"shop_name": settings.SHOP_NAME, "retry_after": settings.SERVICE_UNAVAILABLE_RETRY_AFTER},
        )
        response = HttpResponse(page, status=503)
    response["Retry-After"] = str(settings.SERVICE_UNAVAILABLE_RETRY_AFTER)
    add_never_cache_headers(response)
    response._service_outage = True
    # Django's request logger skips responses marked so: the outage is logged once, above.
    response._has_been_logged = True
    return response


def outage_response(request, exception: BaseException) -> HttpResponse | None:
    service = service_of(exception)
    if service is None:
        return None
    outages.failed(service, exception)
    return unavailable_response(request, service)


class ServiceOutageMiddleware:
    """Turns PostgreSQL/Redis outages met by a view into 503s, and notices their end.

    Listed before SessionMiddleware, so that its response (and a session that could not be
    read) passes back through the session middleware without being saved.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not getattr(response, "_service_outage", False):
            for service in outages.probe_due():
                probe(service)
        return response

    def process_exception(self, request, exception):
        return outage_response(request, exception)


def server_error(request, *args, **kwargs):
    """handler500: an outage raised outside a view (in a middleware) still answers 503."""
    exception = sys.exc_info()[1]
    if exception is not None:
        response = outage_response(request, exception)
        if response is not None:
            return response
    return defaults.server_error(request, *args, **kwargs)

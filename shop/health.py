"""Liveness (/healthz) and readiness (/readyz) probes for Docker, nginx and the runner."""

import logging
import tempfile

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache

logger = logging.getLogger(__name__)


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_redis() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def check_media_root() -> None:
    with tempfile.NamedTemporaryFile(dir=settings.MEDIA_ROOT, prefix=".readyz-"):
        pass


READINESS_CHECKS = {
    "database": check_database,
    "redis": check_redis,
    "media_root": check_media_root,
}


def run_checks() -> dict[str, str]:
    results = {}
    for name, check in READINESS_CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # a probe reports every failure, whatever its type
            logger.warning("readiness check %s failed: %s", name, exc)
            results[name] = f"error: {exc.__class__.__name__}: {exc}"
    return results


@never_cache
def healthz(request):
    return JsonResponse({"status": "ok"})


@never_cache
def readyz(request):
    checks = run_checks()
    ready = all(result == "ok" for result in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )

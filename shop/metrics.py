"""/metrics for Prometheus: django-prometheus's request and database metrics plus the backup gauges.

Answered by a middleware placed first, on the backend port only: Prometheus scrapes gunicorn
directly on the internal network (backend:8000), with whatever Host header it sends, over plain
HTTP, so the host check and the HTTPS redirect of the middlewares after it must not apply. nginx
refuses /metrics (nginx/conf.d/locations.inc.template); a request that came through a proxy
anyway (it carries X-Forwarded-For) gets 404 here too.

gunicorn runs several worker processes: with PROMETHEUS_MULTIPROC_DIR set (ops/gunicorn.conf.py),
prometheus_client keeps each worker's counters in files there and a scrape adds them all up.
"""

import os

from django.http import HttpResponse, HttpResponseNotAllowed, HttpResponseNotFound
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from shop.backups.metrics import BackupCollector

METRICS_PATH = "/metrics"


def application_registry() -> CollectorRegistry:
    """Every worker's metrics in multiprocess mode; this process's own otherwise (runserver, tests)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry
    return REGISTRY


def metrics_text() -> bytes:
    backups = CollectorRegistry(auto_describe=False)
    backups.register(BackupCollector())
    return generate_latest(application_registry()) + generate_latest(backups)


class MetricsEndpointMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path != METRICS_PATH:
            return self.get_response(request)
        if "HTTP_X_FORWARDED_FOR" in request.META:
            return HttpResponseNotFound()  # through nginx or another proxy: not for the public
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)

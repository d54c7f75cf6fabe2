"""/metrics on the Docker-less runner: refused by the real nginx, served by gunicorn's port to
Prometheus, and summed over gunicorn's workers (prometheus_client's multiprocess mode)."""

import os
import signal
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.stack

HEALTHZ_RESPONSES = "django_http_responses_total_by_status_view_method_total"


def healthz_count(backend: str) -> float:
    """One scrape of the backend: the 200 answers of /healthz counted so far, all workers."""
    response = requests.get(f"{backend}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == HEALTHZ_RESPONSES and sample.labels.get("view") == "healthz"
    )


def test_nginx_refuses_metrics_and_the_backend_port_serves_every_worker(shared_stack):
    stack = shared_stack
    # /readyz answers before supervisord counts gunicorn as RUNNING (its startsecs): only then
    # does `ctl status` give the master's pid, which the worker kill below needs.
    stack.wait_until_settled()
    backend = f"http://127.0.0.1:{stack.config.app_port}"

    through_nginx = requests.get(f"{stack.url}/metrics", timeout=10)
    assert through_nginx.status_code == 403
    assert through_nginx.headers["Server"] == "nginx"  # nginx's own answer, not the backend's
    assert "shop_backup" not in through_nginx.text
    assert requests.get(f"{stack.url}/metrics/", timeout=10).status_code == 403

    direct = requests.get(f"{backend}/metrics", timeout=10)
    assert direct.status_code == 200
    assert "shop_backup_volume_present 1.0" in direct.text
    assert "django_db_execute_total" in direct.text

    # Two gunicorn workers (GUNICORN_WORKERS=2): whichever answers a scrape counts both.
    before = healthz_count(backend)
    with requests.Session() as visitor:  # keep-alive through nginx: nginx spreads the requests
        for _ in range(40):
            assert visitor.get(f"{stack.url}/healthz", timeout=10).status_code == 200
    assert all(healthz_count(backend) >= before + 40 for _ in range(6))

    # A worker that exits (gunicorn recycles them every ~1000 requests): its counts stay, moved
    # into the archive file by gunicorn's child_exit (ops/metrics_files.py), its own files go.
    counted = healthz_count(backend)
    worker = gunicorn_workers(stack.pids()["app:web"])[0]
    os.kill(worker, signal.SIGTERM)
    stack.wait_until(lambda: worker not in gunicorn_workers(stack.pids()["app:web"]), 30)
    metrics_dir = Path(f"/dev/shm/shop-metrics-{os.getuid()}-127-0-0-1-{stack.config.app_port}")
    stack.wait_until(lambda: (metrics_dir / "counter_archive.db").exists(), 30)
    assert not list(metrics_dir.glob(f"*_{worker}.db"))
    assert all(healthz_count(backend) >= counted for _ in range(6))


def gunicorn_workers(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return sorted(int(pid) for pid in children)

"""Prometheus metrics on /metrics (backend only) and the admin's history chart, after real backups."""

import re
import time
import xml.etree.ElementTree as ET

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shop.backups import local
from shop.backups.chart import history_charts
from shop.backups.tasks import scheduled_backup, verify_latest_set
from tests.backups.conftest import backup_now

pytestmark = pytest.mark.django_db


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one scrape."""
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def gauge(samples, name: str, **labels) -> float:
    return samples[(f"shop_backup_{name}", tuple(sorted(labels.items())))]


def test_metrics_after_a_real_backup_to_local_and_s3(client, shop_data, s3_bucket):
    before = time.time()
    set_id = scheduled_backup.delay().get()
    manifest = local.local_manifest(set_id)

    samples = scrape(client)

    assert before - 1 <= gauge(samples, "last_success_timestamp_seconds", destination="local") <= time.time()
    assert gauge(samples, "last_success_timestamp_seconds", destination="s3") >= before - 1
    assert gauge(samples, "last_size_bytes") == manifest.total_size()
    assert 0 < gauge(samples, "last_duration_seconds") < time.time() - before + 1
    assert gauge(samples, "sets_kept") == 1
    assert gauge(samples, "newest_verified_timestamp_seconds") == pytest.approx(before, abs=2)
    assert gauge(samples, "max_age_seconds") == 48 * 3600
    assert gauge(samples, "drill_last_success") == -1  # no drill yet
    assert gauge(samples, "last_failure_timestamp_seconds") == 0
    for alert in ("backup", "upload", "drill", "stale"):
        assert gauge(samples, "alert", alert=alert) == 0
    # django-prometheus: the requests and the database.
    assert any(name == "django_http_requests_before_middlewares_total" for name, _ in samples)
    assert any(name == "django_db_execute_total" and value > 0 for (name, _), value in samples.items())

    verify_latest_set.delay().get()
    samples = scrape(client)
    assert gauge(samples, "drill_last_success") == 1
    assert gauge(samples, "drill_last_timestamp_seconds") >= before - 1


def test_metrics_show_a_failing_backup(client, shop_data, backup_settings):
    backup_now("--no-upload")
    from shop.backups import status
    from shop.backups.errors import BackupError

    status.record_failure("backup", BackupError("pg_dump failed"), None)
    samples = scrape(client)
    assert gauge(samples, "alert", alert="backup") == 1
    assert gauge(samples, "last_failure_timestamp_seconds") > 0


def test_metrics_without_a_backup_volume_say_so(client, db):
    assert gauge(scrape(client), "volume_present") == 0


def test_metrics_answer_any_host_over_plain_http_but_never_through_a_proxy(client, db, settings):
    settings.SECURE_SSL_REDIRECT = True  # production: no redirect for Prometheus' plain HTTP scrape
    assert client.get("/metrics", HTTP_HOST="backend:8000").status_code == 200  # not in ALLOWED_HOSTS
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 404
    assert client.post("/metrics").status_code == 405


def test_the_admin_draws_size_and_duration_of_each_set(admin_client, shop_data, media_root):
    first = backup_now("--no-upload")
    (media_root / "products").mkdir(exist_ok=True)
    (media_root / "products" / "big.bin").write_bytes(b"x" * 300_000)  # the second set is bigger
    second = backup_now("--no-upload")

    page = admin_client.get("/admin/backups/backupset/").content.decode()

    svgs = re.findall(r"<svg class=\"backup-chart\".*?</svg>", page, flags=re.DOTALL)
    assert len(svgs) == 2  # size, duration
    size_chart = ET.fromstring(svgs[0])  # noqa: S314 (our own page)
    circles = size_chart.findall("{http://www.w3.org/2000/svg}circle")
    titles = [circle.find("{http://www.w3.org/2000/svg}title").text for circle in circles]
    assert [title.split(":")[0] for title in titles] == [first, second]
    first_y, second_y = (float(circle.get("cy")) for circle in circles)
    assert second_y < first_y  # bigger is higher up
    assert size_chart.find("{http://www.w3.org/2000/svg}polyline").get("points").count(",") == 2


def test_history_chart_coordinates():
    history = [
        {"id": f"202611{d}T020000Z", "at": f"2026-11-{d}T02:00:00+00:00", "bytes": b, "duration_seconds": s}
        for d, b, s in [("01", 1000, 10), ("02", 2000, None), ("03", 500, 30)]
    ]
    size, duration = history_charts(history)
    assert [(p["x"], p["y"]) for p in size.points] == [(70.0, 74.0), (350.0, 12.0), (630.0, 105.0)]
    assert size.max_label == "2.0 KB"
    assert (size.first_label, size.last_label) == ("2026-11-01", "2026-11-03")
    assert [p["label"] for p in duration.points] == ["20261101T020000Z: 10.0 s", "20261103T020000Z: 30.0 s"]
    assert history_charts([])[0].points == []

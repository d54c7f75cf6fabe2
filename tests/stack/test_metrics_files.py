"""ops/metrics_files.py: a recycled gunicorn worker's counts move to the archive, none lost."""

import os
import subprocess
import sys

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from ops.metrics_files import retire_worker

WORKER = """
from prometheus_client import Counter, Histogram
Counter("requests", "Requests", ["view"]).labels(view="home").inc({n})
Histogram("latency_seconds", "Latency").observe(0.2)
import os; print(os.getpid())
"""


def run_worker(directory, n: int) -> int:
    """A process that counts like a gunicorn worker, then exits; its pid."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    result = subprocess.run(
        [sys.executable, "-c", WORKER.format(n=n)], env=env, capture_output=True, text=True, check=True
    )
    return int(result.stdout)


def totals(directory) -> dict[str, float]:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    wanted = ("requests_total", "latency_seconds_count", "latency_seconds_sum")
    return {s.name: s.value for m in registry.collect() for s in m.samples if s.name in wanted}


def test_a_retired_worker_s_counts_are_kept_in_the_archive_and_its_files_removed(tmp_path):
    directory = tmp_path / "metrics"
    directory.mkdir()
    first, second = run_worker(directory, 3), run_worker(directory, 4)
    before = totals(directory)
    assert before == {"requests_total": 7, "latency_seconds_count": 2, "latency_seconds_sum": 0.4}

    retire_worker(str(directory), first)
    assert totals(directory) == before
    retire_worker(str(directory), second)
    assert totals(directory) == before
    assert sorted(path.name for path in directory.iterdir()) == ["counter_archive.db", "histogram_archive.db"]

    third = run_worker(directory, 5)  # a new worker's counts add up with the archive
    retire_worker(str(directory), third)
    assert totals(directory)["requests_total"] == 12

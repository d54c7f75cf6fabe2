"""gunicorn settings, from the environment so Docker and the Docker-less runner share them."""

import multiprocessing
import os
import re
import shutil
import tempfile

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# Two workers per CPU plus one, capped: the shop is I/O bound and the host is small.
workers = int(os.environ.get("GUNICORN_WORKERS", min(2 * multiprocessing.cpu_count() + 1, 8)))
# Long enough for a 10 MB upload to be validated and re-encoded; nginx waits 60 s.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "55"))
graceful_timeout = 20
keepalive = 5
# Restart workers now and then so a slow leak cannot grow without bound.
max_requests = 1000
max_requests_jitter = 100
accesslog = "-"
errorlog = "-"
# /dev/shm is memory-backed: worker heartbeats never stall on a slow or read-only disk.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# gunicorn's control socket (for `gunicornc`) defaults to one path per user
# ($HOME/.gunicorn/gunicorn.ctl), which two gunicorns of one user would share and a read-only
# root file system cannot hold: each stack names its own (the image: /tmp, the runner: DATA_PATH/run).
control_socket_disable = not os.environ.get("GUNICORN_CONTROL_SOCKET")
if not control_socket_disable:
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]

# Prometheus (shop/metrics.py): each worker keeps its counters in files in this directory and a
# scrape of any worker adds them up (prometheus_client's multiprocess mode). Set before a worker
# imports prometheus_client; emptied at every start (old files would be counted again), on
# memory-backed /dev/shm where there is one. One directory per user and address: two stacks on one
# machine never share it.
_metrics_name = f"shop-metrics-{os.getuid()}-{re.sub(r'[^0-9A-Za-z]+', '-', bind)}"
_default_metrics_dir = os.path.join(worker_tmp_dir or tempfile.gettempdir(), _metrics_name)
metrics_dir = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", _default_metrics_dir)


def on_starting(server):
    shutil.rmtree(metrics_dir, ignore_errors=True)
    os.makedirs(metrics_dir, mode=0o700)


def child_exit(server, worker):
    from ops.metrics_files import retire_worker

    retire_worker(metrics_dir, worker.pid)


def on_exit(server):
    shutil.rmtree(metrics_dir, ignore_errors=True)

"""The container healthchecks of the shop image; exit 0 = healthy.

`healthcheck.py` (web): GET /healthz from gunicorn, as Django sees it. Django answers only for
a host in DJANGO_ALLOWED_HOSTS, so the probe names the first of them rather than 127.0.0.1,
which production does not list. Standard library only.

`healthcheck.py broker` (beat): beat has no endpoint and answers no ping; what it needs to do
its work is the broker, so the probe connects to it as beat does.
"""

import os
import sys
import urllib.request

PORT = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000").rsplit(":", 1)[-1]


def probe_host() -> str:
    hosts = [h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost").split(",") if h.strip()]
    first = hosts[0] if hosts else "localhost"
    # ".example.com" allows every subdomain; "*" allows anything.
    return "localhost" if first == "*" else first.lstrip(".")


def broker_reachable() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from shop.celery import app

    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=5)
    except Exception as error:
        print(f"healthcheck failed: the broker does not answer: {error}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    if sys.argv[1:] == ["broker"]:
        return broker_reachable()
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}/healthz", headers={"Host": probe_host()})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (fixed http URL)
            return 0 if response.status == 200 else 1
    except OSError as error:
        print(f"healthcheck failed: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

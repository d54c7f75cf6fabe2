"""The container healthcheck of the shop image: GET /healthz from gunicorn, as Django sees it.

Django answers only for a host in DJANGO_ALLOWED_HOSTS, so the probe names the first of them
rather than 127.0.0.1, which production does not list. Standard library only; exit 0 = healthy.
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


def main() -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}/healthz", headers={"Host": probe_host()})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (fixed http URL)
            return 0 if response.status == 200 else 1
    except OSError as error:
        print(f"healthcheck failed: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""nginx/conf.d: renders for Docker and for the runner, passes `nginx -t`, and keeps its promises."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

from ops import nginx_config
from ops.runner import nginx_worker_user
from tests.stack import compose

MEGABYTE = 1024 * 1024


def local_site(root: Path, scheme: str = "http") -> nginx_config.NginxSite:
    for name in ("static", "uploads", "logs"):
        (root / name).mkdir(exist_ok=True)
    return nginx_config.NginxSite(
        scheme=scheme,
        listen="127.0.0.1:18081",
        tls_listen="127.0.0.1:18443",
        backend="127.0.0.1:18001",
        static_root=root / "static",
        media_root=root / "uploads",
        log_dir=root / "logs",
        ssl_dir=root / "ssl",
    )


def rendered(root: Path, scheme: str = "http") -> str:
    files = nginx_config.render_templates(local_site(root, scheme), root / "conf.d")
    return "\n".join(path.read_text() for path in files)


def block(text: str, opening: str) -> str:
    """The body of the `opening { ... }` block (nested braces included)."""
    start = text.index(opening) + len(opening)
    depth, position = 1, start
    while depth:
        depth += {"{": 1, "}": -1}.get(text[position], 0)
        position += 1
    return text[start : position - 1]


def self_signed_certificate(directory: Path) -> None:
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed: cannot make a test certificate")
    directory.mkdir()
    command = [
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
    ]
    command += ["-keyout", str(directory / "privkey.pem"), "-out", str(directory / "fullchain.pem")]
    subprocess.run(command, check=True, capture_output=True)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_rendered_configuration_passes_nginx_t(tmp_path, scheme, nginx):
    prefix = tmp_path / "nginx"
    site = local_site(tmp_path, scheme)
    if scheme == "https":
        self_signed_certificate(site.ssl_dir)
    main = nginx_config.write_config(
        site, prefix, nginx, nginx_worker_user(), tmp_path / "logs" / "error.log"
    )

    result = nginx_config.check_config(nginx, prefix, main)

    assert "test is successful" in result.stderr


def test_placeholders_match_what_compose_and_the_runner_provide(tmp_path):
    templates = "".join(path.read_text() for path in nginx_config.TEMPLATE_DIR.glob("*.template"))
    used = set(re.findall(r"\$\{(NGINX_[A-Z_]+)\}", templates))
    nginx_env = compose.load("docker-compose.yml")["services"]["nginx"]["environment"]
    assert used == set(nginx_env) - {"NGINX_ENVSUBST_FILTER"}
    assert used == set(local_site(tmp_path).placeholders())
    assert re.fullmatch(nginx_env["NGINX_ENVSUBST_FILTER"].strip("^") + ".*", "NGINX_BACKEND")


def test_a_missing_value_is_an_error_not_a_silent_gap(tmp_path):
    template_dir = tmp_path / "templates"
    template_dir.mkdir()
    (template_dir / "x.conf.template").write_text("root ${NGINX_UNKNOWN};\n")

    with pytest.raises(nginx_config.NginxConfigError, match="NGINX_UNKNOWN"):
        nginx_config.render_templates(local_site(tmp_path), tmp_path / "out", template_dir)


def test_body_limit_lets_the_shops_largest_upload_through_and_stops_12_mb(tmp_path):
    limit = re.search(r"client_max_body_size (\d+)m;", rendered(tmp_path))
    allowed = int(limit.group(1)) * MEGABYTE
    # Above the app's limit (a 10 MB file plus the multipart form around it), below 12 MB.
    assert settings.MAX_UPLOAD_BYTES < allowed < 12 * MEGABYTE


def test_media_is_served_as_images_only_never_executed_or_proxied(tmp_path):
    media = block(rendered(tmp_path), "location /media/ {")
    assert "include conf.d/media-local.inc;" in media
    media += (tmp_path / "conf.d" / "media-local.inc").read_text()
    assert f"alias {tmp_path / 'uploads'}/;" in media
    assert not re.search(r"\b(proxy_pass|fastcgi_pass|uwsgi_pass|scgi_pass)\b", media)
    types = block(media, "types {")
    assert set(re.findall(r"(\S+/\S+)", types)) == {"image/jpeg", "image/png", "image/webp"}
    assert "default_type application/octet-stream;" in media
    assert "add_header Content-Security-Policy \"default-src 'none'\" always;" in media
    assert "include conf.d/security-headers.inc;" in media
    headers = (tmp_path / "conf.d" / "security-headers.inc").read_text()
    assert "add_header X-Content-Type-Options nosniff always;" in headers


def test_static_and_media_have_cache_headers_and_text_is_gzipped(tmp_path):
    text = rendered(tmp_path)
    assert "Cache-Control" in block(text, "location /static/ {")
    assert "immutable" in block(text, "location /media/ {")  # names are content hashes
    assert re.search(r"^gzip on;", text, flags=re.MULTILINE)
    assert "text/css" in text
    assert "application/javascript" in text


def test_production_redirects_to_https_but_passes_probes(tmp_path):
    rendered(tmp_path, "https")
    assert "include conf.d/servers-https.inc;" in (tmp_path / "conf.d" / "shop.conf").read_text()
    text = (tmp_path / "conf.d" / "servers-https.inc").read_text()
    plain_server = block(text, "server {")
    assert "return 301 https://$host$request_uri;" in plain_server
    assert "proxy_pass http://shop_backend;" in block(plain_server, "location = /healthz {")
    assert "listen 127.0.0.1:18443 ssl default_server;" in text
    assert f"ssl_certificate {tmp_path / 'ssl'}/fullchain.pem;" in text


def test_docker_main_configuration_includes_the_rendered_shop_only():
    main = (nginx_config.PROJECT_ROOT / "nginx" / "nginx.conf").read_text()
    assert "include conf.d/shop.conf;" in main
    assert "error_log /var/log/shop-nginx/error.log" in main

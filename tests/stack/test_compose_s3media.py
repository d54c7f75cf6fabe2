"""docker-compose.s3media.yml as Docker Compose itself reads it (`docker compose config`, no
engine needed) over the development and the production stack: several backends, no uploads
volume, the images in the bucket, nginx proxying /media/ to it. It runs for real in
tests/docker (test_compose_s3media.py)."""

import json
import shutil
import subprocess

import pytest

from ops import init_stack, nginx_config
from tests.docker.compose_project import copy_checkout
from tests.stack.programs import skip_or_fail

APP_SERVICES = ("migrate", "backend", "worker", "backup", "beat")
DEVELOPMENT = ["docker-compose.yml", "docker-compose.override.yml", "docker-compose.s3media.yml"]
PRODUCTION = ["docker-compose.yml", "docker-compose.prod.yml", "docker-compose.s3media.yml"]
PRODUCTION_ENV = {
    "DJANGO_ALLOWED_HOSTS": "shop.example.com",
    "SHOP_DOMAIN": "shop.example.com",
    "EMAIL_URL": "smtp://mail.example.com:25",
    "BACKUP_S3_BUCKET": "shop-backups",
    "BACKUP_S3_ACCESS_KEY_ID": "backup-key",
    "BACKUP_S3_SECRET_ACCESS_KEY": "backup-secret",
    "MEDIA_S3_BUCKET": "shop-images",
    "MEDIA_S3_PREFIX": "catalog",
    "MEDIA_S3_ENDPOINT_URL": "",
    "MEDIA_S3_REGION": "eu-central-1",
    "MEDIA_S3_ACCESS_KEY_ID": "media-key",
    "MEDIA_S3_SECRET_ACCESS_KEY": "media-secret",
    "MEDIA_S3_NGINX_URL": "https://shop-images.s3.eu-central-1.amazonaws.com/catalog/",
}


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    if (
        shutil.which("docker") is None
        or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode
    ):
        skip_or_fail("Docker Compose v2 (`docker compose`) is not installed")
    root = tmp_path_factory.mktemp("s3media")
    copy_checkout(root)
    init_stack.ensure_env_file(root)
    return root


def compose_config(root, files: list[str], **env: str) -> dict:
    arguments = [argument for name in files for argument in ("-f", name)]
    result = subprocess.run(
        ["docker", "compose", *arguments, "config", "--format", "json"],
        cwd=root,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def mounted_volumes(service: dict) -> set[str]:
    return {volume.get("source") for volume in service.get("volumes", [])}


@pytest.mark.parametrize(
    ("files", "env"), [(DEVELOPMENT, {}), (PRODUCTION, PRODUCTION_ENV)], ids=["dev", "prod"]
)
def test_no_service_needs_the_uploads_volume_and_every_one_uses_the_bucket(checkout, files, env):
    config = compose_config(checkout, files, **env)
    services = config["services"]

    assert "uploads" not in config.get("volumes", {})
    assert not [name for name, service in services.items() if "uploads" in mounted_volumes(service)]
    for name in APP_SERVICES:
        assert services[name]["environment"]["MEDIA_STORAGE"] == "s3", name
    # What the base file gave them stays: logs, static files, the backup sets.
    assert {"logs", "frontend_build", "backup_data"} <= mounted_volumes(services["backend"])
    assert {"backup_data", "logs"} <= mounted_volumes(services["backup"])


def test_the_backend_scales_behind_nginx(checkout):
    services = compose_config(checkout, DEVELOPMENT)["services"]
    backend = services["backend"]

    # Nothing that pins one container: `--scale backend=3` works.
    assert "container_name" not in backend
    assert not backend.get("ports")
    # nginx names the service, which Docker's DNS resolves to every replica.
    assert services["nginx"]["environment"]["NGINX_BACKEND"] == "backend:8000"
    assert services["nginx"]["depends_on"]["backend"]["condition"] == "service_healthy"


def test_development_media_bucket_is_minio_and_nginx_proxies_to_its_prefix(checkout):
    services = compose_config(checkout, DEVELOPMENT)["services"]
    environment = services["backend"]["environment"]
    env_file = init_stack.read_env_file(checkout / ".env")

    assert environment["MEDIA_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert environment["MEDIA_S3_BUCKET"] == "shop-media"
    assert environment["MEDIA_S3_SECRET_ACCESS_KEY"] == env_file["MINIO_ROOT_PASSWORD"]
    nginx = services["nginx"]["environment"]
    assert nginx["NGINX_MEDIA_STORAGE"] == "s3"
    assert nginx["NGINX_MEDIA_BUCKET_URL"] == "http://minio:9000/shop-media/media/"
    setup = " ".join(services["minio-setup"]["command"]).replace("$$", "$")  # as the shell gets it
    assert 'mc mb --ignore-existing "local/$MEDIA_S3_BUCKET"' in setup
    assert 'mc anonymous set download "local/$MEDIA_S3_BUCKET/$MEDIA_S3_PREFIX"' in setup


def test_production_uses_the_configured_bucket_and_nginx_renders_for_it(checkout, tmp_path):
    services = compose_config(checkout, PRODUCTION, **PRODUCTION_ENV)["services"]
    environment = services["worker"]["environment"]
    assert environment["MEDIA_S3_ENDPOINT_URL"] == ""  # AWS
    assert (environment["MEDIA_S3_BUCKET"], environment["MEDIA_S3_PREFIX"]) == ("shop-images", "catalog")
    assert environment["MEDIA_S3_ACCESS_KEY_ID"] == "media-key"
    nginx_env = services["nginx"]["environment"]
    assert "minio" not in services

    # The templates as the nginx image renders them with this environment.
    site = nginx_config.NginxSite(
        listen=nginx_env["NGINX_LISTEN"],
        backend=nginx_env["NGINX_BACKEND"],
        static_root=nginx_env["NGINX_STATIC_ROOT"],
        media_root=nginx_env["NGINX_MEDIA_ROOT"],
        log_dir=nginx_env["NGINX_LOG_DIR"],
        media_storage=nginx_env["NGINX_MEDIA_STORAGE"],
        media_bucket_url=nginx_env["NGINX_MEDIA_BUCKET_URL"],
    )
    nginx_config.render_templates(site, tmp_path)
    assert "include conf.d/media-s3.inc;" in (tmp_path / "locations.inc").read_text()
    proxied = (tmp_path / "media-s3.inc").read_text()
    assert "proxy_pass https://shop-images.s3.eu-central-1.amazonaws.com/catalog/;" in proxied


def test_without_the_media_secret_compose_refuses_with_the_reason(checkout):
    arguments = [argument for name in PRODUCTION for argument in ("-f", name)]
    # The environment wins over .env: both empty, as on a server where neither was set.
    env = {**PRODUCTION_ENV, "MEDIA_S3_SECRET_ACCESS_KEY": "", "MINIO_ROOT_PASSWORD": ""}
    result = subprocess.run(
        ["docker", "compose", *arguments, "config"],
        cwd=checkout,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "MEDIA_S3_SECRET_ACCESS_KEY" in result.stderr

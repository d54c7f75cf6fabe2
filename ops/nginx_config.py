"""Render nginx/conf.d (envsubst-style templates) the way the nginx image does, for local use.

In Docker the nginx:alpine entrypoint renders /etc/nginx/templates/*.template into
/etc/nginx/conf.d with envsubst. The Docker-less runner and the tests do the same here with
string.Template (same `${NAME}` syntax), then write a small main nginx.conf with local paths.
"""

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from string import Template

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DIR = PROJECT_ROOT / "nginx" / "conf.d"
TEMPLATE_SUFFIX = ".template"
UNRENDERED = re.compile(r"\$\{?NGINX_[A-Z_]+")


class NginxConfigError(Exception):
    pass


@dataclass(frozen=True)
class NginxSite:
    """The values of the ${NGINX_...} placeholders in nginx/conf.d."""

    listen: str
    backend: str
    static_root: Path
    media_root: Path
    log_dir: Path
    scheme: str = "http"
    tls_listen: str = "443"
    https_public_port: str = "443"
    server_name: str = "_"
    ssl_dir: Path = Path("/etc/nginx/ssl")
    # More gunicorns behind the same upstream (the runner's RUNNER_BACKENDS), round robin.
    extra_backends: tuple[str, ...] = ()
    media_storage: str = "local"
    media_bucket_url: str = ""

    def placeholders(self) -> dict[str, str]:
        return {
            "NGINX_SCHEME": self.scheme,
            "NGINX_LISTEN": self.listen,
            "NGINX_TLS_LISTEN": self.tls_listen,
            "NGINX_HTTPS_PUBLIC_PORT": self.https_public_port,
            "NGINX_SERVER_NAME": self.server_name,
            # `server ${NGINX_BACKEND};` in the upstream: one server line per backend.
            "NGINX_BACKEND": ";\n    server ".join((self.backend, *self.extra_backends)),
            "NGINX_STATIC_ROOT": str(self.static_root),
            "NGINX_MEDIA_ROOT": str(self.media_root),
            "NGINX_LOG_DIR": str(self.log_dir),
            "NGINX_SSL_DIR": str(self.ssl_dir),
            "NGINX_MEDIA_STORAGE": self.media_storage,
            "NGINX_MEDIA_BUCKET_URL": self.media_bucket_url,
        }


def media_s3_url(endpoint: str | None, bucket: str, prefix: str, region: str = "us-east-1") -> str:
    """The URL nginx proxies /media/ to: the bucket's prefix, path-style on an S3 endpoint of
    one's own (MinIO, moto), virtual-hosted on AWS (no endpoint)."""
    prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    if endpoint:
        return f"{endpoint.rstrip('/')}/{bucket}/{prefix}"
    return f"https://{bucket}.s3.{region}.amazonaws.com/{prefix}"


def render_templates(site: NginxSite, out_dir: Path, template_dir: Path = TEMPLATE_DIR) -> list[Path]:
    """Render every *.template of template_dir into out_dir (suffix dropped), like envsubst."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rendered = []
    for template in sorted(template_dir.glob(f"*{TEMPLATE_SUFFIX}")):
        # safe_substitute: nginx's own $variables ($host, $uri, ...) stay as they are.
        text = Template(template.read_text()).safe_substitute(site.placeholders())
        leftover = UNRENDERED.search(_without_comments(text))
        if leftover:
            raise NginxConfigError(f"{template.name}: no value for {leftover.group(0)}")
        target = out_dir / template.name.removesuffix(TEMPLATE_SUFFIX)
        target.write_text(text)
        rendered.append(target)
    return rendered


def _without_comments(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def main_config(prefix: Path, mime_types: Path, worker_user: str | None, error_log: Path) -> str:
    """A main nginx.conf for a local nginx: pid and temporary files under prefix."""
    user_line = f"user {worker_user};\n" if worker_user else ""
    temp = prefix / "temp"
    return (
        "# Written by ops/nginx_config.py for the Docker-less runner; the shop's configuration\n"
        "# is the rendered conf.d/shop.conf, the same as in the nginx container.\n"
        f"{user_line}"
        "worker_processes 2;\n"
        f"pid {prefix / 'nginx.pid'};\n"
        f"error_log {error_log} warn;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"    include {mime_types};\n"
        "    default_type application/octet-stream;\n"
        f"    client_body_temp_path {temp / 'client_body'};\n"
        f"    proxy_temp_path {temp / 'proxy'};\n"
        f"    fastcgi_temp_path {temp / 'fastcgi'};\n"
        f"    uwsgi_temp_path {temp / 'uwsgi'};\n"
        f"    scgi_temp_path {temp / 'scgi'};\n"
        "    include conf.d/shop.conf;\n"
        "}\n"
    )


def find_nginx() -> str | None:
    # Debian installs nginx in /usr/sbin, which is not on a normal user's PATH.
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def mime_types_path(nginx: str) -> Path:
    """mime.types next to the configuration nginx was built with (`nginx -V`: --conf-path)."""
    build_info = subprocess.run([nginx, "-V"], capture_output=True, text=True, check=True).stderr
    match = re.search(r"--conf-path=(\S+)", build_info)
    conf_dir = Path(match.group(1)).parent if match else Path("/etc/nginx")
    return conf_dir / "mime.types"


def write_config(site: NginxSite, prefix: Path, nginx: str, worker_user: str | None, error_log: Path) -> Path:
    """Render conf.d and a main file into prefix; return the main file's path."""
    render_templates(site, prefix / "conf.d")
    (prefix / "temp").mkdir(parents=True, exist_ok=True)
    main = prefix / "nginx.conf"
    main.write_text(main_config(prefix, mime_types_path(nginx), worker_user, error_log))
    return main


def nginx_arguments(prefix: Path, main: Path) -> list[str]:
    # -e stderr: nginx opens its built-in error log before it reads the configuration.
    return ["-e", "stderr", "-p", str(prefix), "-c", str(main)]


def check_config(nginx: str, prefix: Path, main: Path) -> subprocess.CompletedProcess:
    """`nginx -t` on the written configuration (raises CalledProcessError when it fails)."""
    return subprocess.run(
        [nginx, "-t", *nginx_arguments(prefix, main)], capture_output=True, text=True, check=True
    )

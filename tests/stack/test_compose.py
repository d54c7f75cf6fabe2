"""The compose files: the documented volume layout and our rules, without Docker.

The files are parsed, interpolated with .env.example and merged as `docker compose` would
(tests/stack/compose.py), then checked, so these rules hold on a machine without Docker too.
Docker's own `docker compose config` and the stacks themselves run in tests/docker.
"""

import re

import pytest

from ops.init_stack import read_env_file
from ops.runner import DEFAULT_PORTS, REQUIRED_SECRETS
from tests.stack import compose
from tests.stack.compose import PROJECT_ROOT

BASE, DEVELOPMENT, PRODUCTION = "docker-compose.yml", "docker-compose.override.yml", "docker-compose.prod.yml"
STACKS = {"base": [BASE], "development": [BASE, DEVELOPMENT], "production": [BASE, PRODUCTION]}

BIND_VOLUMES = {
    "postgres_data": "${DATA_PATH:-./data}/postgres",
    "uploads": "${DATA_PATH:-./data}/uploads",
    "redis_data": "${DATA_PATH:-./data}/redis",
    "logs": "${DATA_PATH:-./data}/logs",
    "nginx_logs": "${DATA_PATH:-./data}/nginx-logs",
    "backup_data": "${BACKUP_PATH:-./backups}",
}
NAMED_VOLUMES = {"frontend_build", "beat_schedule", "postgres_socket"}
CONFIG_DIRS = ("./nginx", "./database", "./redis")
ONE_SHOT = {"migrate", "minio-setup", "pitr-restore"}
APP_SERVICES = {"migrate", "backend", "worker", "backup", "beat"}
SECRETS = ("POSTGRES_PASSWORD", "APP_DB_PASSWORD", "BACKUP_DB_PASSWORD", "REDIS_PASSWORD",
           "DJANGO_SECRET_KEY", "BACKUP_S3_ACCESS_KEY_ID", "BACKUP_S3_SECRET_ACCESS_KEY")  # fmt: skip


def documented_variables() -> set[str]:
    """Names in .env.example, set (`NAME=`) or shown with their default (`# NAME=`)."""
    text = (PROJECT_ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


def example_env() -> dict[str, str]:
    return read_env_file(PROJECT_ROOT / ".env.example")


def production_env() -> dict[str, str]:
    """.env.example with what production requires and the example leaves empty."""
    return {
        **example_env(),
        "BACKUP_S3_BUCKET": "shop-backups",
        "BACKUP_S3_ACCESS_KEY_ID": "key-id",
        "BACKUP_S3_SECRET_ACCESS_KEY": "secret",
    }


def load_stack(name: str, env: dict[str, str] | None = None) -> dict:
    """The files of a stack, each interpolated, then merged (the order docker compose uses)."""
    if env is None:
        env = production_env() if name == "production" else example_env()
    files = [compose.interpolate(compose.load(file), env) for file in STACKS[name]]
    merged = files[0]
    for override in files[1:]:
        merged = compose.merge(merged, override)
    return merged


def mounts(service: dict) -> dict[str, tuple[str, bool]]:
    """target -> (source, read_only)"""
    result = {}
    for volume in service.get("volumes", []):
        source, target, read_only = compose.parse_mount(volume)
        result[target] = (source, read_only)
    return result


def test_volumes_are_the_documented_layout():
    volumes = compose.load(BASE)["volumes"]
    assert set(volumes) == set(BIND_VOLUMES) | NAMED_VOLUMES
    for name, device in BIND_VOLUMES.items():
        assert volumes[name] == {
            "driver": "local",
            "driver_opts": {"type": "none", "o": "bind", "device": device},
        }
    for name in NAMED_VOLUMES:
        assert not volumes[name], f"{name} is a plain named volume"


@pytest.mark.parametrize("stack", STACKS)
def test_volumes_are_mounted_where_each_service_keeps_the_data(stack):
    services = load_stack(stack)["services"]
    assert mounts(services["database"])["/var/lib/postgresql/data"] == ("postgres_data", False)
    assert mounts(services["redis"])["/data"] == ("redis_data", False)
    for name in APP_SERVICES:
        env = services[name]["environment"]
        if name in ("backend", "worker"):
            assert mounts(services[name])[env["MEDIA_ROOT"]] == ("uploads", False)
        assert mounts(services[name])[env["LOG_DIR"]] == ("logs", False)
    backend_env = services["backend"]["environment"]
    assert mounts(services["backend"])[backend_env["STATIC_ROOT"]] == ("frontend_build", False)
    # Restores run in the backend: it has the uploads writable and sees the backup sets.
    assert mounts(services["backend"])[backend_env["BACKUP_PATH"]] == ("backup_data", False)
    backup = mounts(services["backup"])
    assert backup["/backups"] == ("backup_data", False)
    assert services["backup"]["environment"]["BACKUP_PATH"] == "/backups"
    assert backup[services["backup"]["environment"]["MEDIA_ROOT"]] == ("uploads", True)
    beat_dir = services["beat"]["environment"]["CELERY_BEAT_SCHEDULE_FILE"].rsplit("/", 1)[0]
    assert mounts(services["beat"])[beat_dir] == ("beat_schedule", False)
    nginx, nginx_env = mounts(services["nginx"]), services["nginx"]["environment"]
    assert nginx[nginx_env["NGINX_STATIC_ROOT"]] == ("frontend_build", True)
    assert nginx[nginx_env["NGINX_MEDIA_ROOT"]] == ("uploads", True)
    assert nginx[nginx_env["NGINX_LOG_DIR"]] == ("nginx_logs", False)
    # Where nginx.conf's error_log is, and not the image's /var/log/nginx (Docker would give the
    # volume that directory's owner, root, and nginx does not run as root).
    assert nginx_env["NGINX_LOG_DIR"] == "/var/log/shop-nginx"
    assert f"error_log {nginx_env['NGINX_LOG_DIR']}/" in (PROJECT_ROOT / "nginx" / "nginx.conf").read_text()


@pytest.mark.parametrize("stack", STACKS)
def test_configuration_is_mounted_read_only_and_used(stack):
    services = load_stack(stack)["services"]
    for name, service in services.items():
        for target, (source, read_only) in mounts(service).items():
            if source.startswith(CONFIG_DIRS):
                assert read_only, f"{name}: {source} must be mounted read-only"
                assert (PROJECT_ROOT / source).exists(), f"{name}: {source} does not exist"
                assert not source.startswith("./nginx/ssl") or target == "/etc/nginx/ssl"
    database = mounts(services["database"])
    assert database["/docker-entrypoint-initdb.d"] == ("./database/init", True)
    assert database["/etc/postgresql/postgresql.conf"] == ("./database/postgresql.conf", True)
    assert "config_file=/etc/postgresql/postgresql.conf" in services["database"]["command"]
    assert mounts(services["redis"])["/usr/local/etc/redis/redis.conf"] == ("./redis/redis.conf", True)
    assert services["redis"]["command"][:2] == ["redis-server", "/usr/local/etc/redis/redis.conf"]
    nginx = mounts(services["nginx"])
    assert nginx["/etc/nginx/nginx.conf"] == ("./nginx/nginx.conf", True)
    assert nginx["/etc/nginx/templates"] == ("./nginx/conf.d", True)  # rendered by the image
    assert nginx["/etc/nginx/ssl"] == ("./nginx/ssl", True)


@pytest.mark.parametrize("stack", STACKS)
def test_healthchecks_and_start_order(stack):
    services = load_stack(stack)["services"]
    # Every long-running service has one: `docker compose up --wait` waits for all of them.
    long_running = (
        "database",
        "redis",
        "backend",
        "worker",
        "backup",
        "beat",
        "nginx",
        "pgbackrest-db",
        "pgbackrest-repo",
    )
    for name in long_running:
        healthcheck = services[name]["healthcheck"]
        assert healthcheck["test"], name
        assert not healthcheck.get("disable"), name
    assert "pg_isready" in " ".join(services["database"]["healthcheck"]["test"])
    # Our own database image (database/Dockerfile), built on the postgres image.
    assert services["database"]["image"].endswith("-database:latest")
    assert services["database"]["build"]["context"] == "./database"
    assert services["backup"]["depends_on"]["pgbackrest-db"]["condition"] == "service_healthy"
    assert services["redis"]["image"] == "redis:7-alpine"
    assert re.fullmatch(r"nginx:[\w.-]*alpine", services["nginx"]["image"])
    ready = {
        "database": "service_healthy",
        "redis": "service_healthy",
        "migrate": "service_completed_successfully",
    }
    for name in ("backend", "worker", "backup"):
        conditions = {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}
        assert ready.items() <= conditions.items(), name
    assert services["migrate"]["depends_on"]["database"]["condition"] == "service_healthy"
    assert services["migrate"]["command"] == ["migrate"]
    assert services["nginx"]["depends_on"]["backend"]["condition"] == "service_healthy"
    for name, service in services.items():
        for dependency, spec in service.get("depends_on", {}).items():
            if spec["condition"] == "service_healthy":
                assert "test" in services[dependency].get("healthcheck", {}), f"{name} waits for {dependency}"


@pytest.mark.parametrize("stack", STACKS)
def test_long_running_services_restart_and_rotate_their_logs(stack):
    for name, service in load_stack(stack)["services"].items():
        if name in ONE_SHOT:
            assert service["restart"] == "no", name
            continue
        assert service["restart"] == "unless-stopped", name
        logging = service["logging"]
        assert logging["driver"] == "json-file", name
        assert {"max-size", "max-file"} <= set(logging["options"]), name


def test_services_whose_data_is_backed_up_are_labelled():
    services = load_stack("base")["services"]
    for name in ("database", "backend"):  # the database and the uploads
        assert services[name]["labels"]["backup.enable"] == "true"
        assert services[name]["labels"]["backup.schedule"] == example_env()["BACKUP_SCHEDULE"]
    assert "backup.enable" not in services["redis"].get("labels", {})
    backup_queue = compose.load(BASE)["services"]["backup"]["command"]
    assert backup_queue == ["backup-worker"]
    assert "--queues backups" in (PROJECT_ROOT / "ops" / "entrypoint.sh").read_text()


def test_development_override():
    services = load_stack("development")["services"]
    for name in APP_SERVICES:
        assert mounts(services[name])["/app"] == (".", False), f"{name} runs the mounted source"
        assert services[name]["environment"]["DJANGO_DEBUG"] == "true"
    assert services["backend"]["command"] == ["dev"]  # runserver, reloads on changes
    assert services["database"]["ports"] == ["127.0.0.1:5433:5432"]
    assert "ports" not in services["redis"]
    assert mounts(services["minio"])["/data"] == ("minio_data", False)
    assert "minio_data" in load_stack("development")["volumes"]
    setup = services["minio-setup"]
    assert setup["depends_on"]["minio"]["condition"] == "service_healthy"
    assert "mc mb --ignore-existing" in " ".join(setup["command"])
    assert services["backup"]["depends_on"]["minio-setup"]["condition"] == "service_completed_successfully"
    assert services["backend"]["environment"]["BACKUP_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert services["backend"]["environment"]["EMAIL_URL"] == "smtp://mailpit:1025"
    assert "mailpit" in services


def test_production_override():
    services = load_stack("production")["services"]
    for name, service in services.items():
        for target, (source, _) in mounts(service).items():
            is_bind = source.startswith((".", "/"))
            assert not is_bind or source.startswith(CONFIG_DIRS), f"{name}: {source} mounted at {target}"
        assert service.get("read_only") is True, f"{name}: read-only root file system"
        assert service["deploy"]["resources"]["limits"]["memory"], name
        assert service["deploy"]["resources"]["limits"]["cpus"], name
    assert "ports" not in services["database"]
    assert "ports" not in services["redis"]
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert env["DJANGO_DEBUG"] == "false", name
        assert env["BACKUP_S3_BUCKET"] == production_env()["BACKUP_S3_BUCKET"]
        assert "/tmp" in services[name]["tmpfs"]
    nginx = services["nginx"]
    assert nginx["environment"]["NGINX_SCHEME"] == "https"
    assert sorted(port.rsplit(":", 1)[1] for port in nginx["ports"]) == ["8080", "8443"]
    assert any(mount.startswith("/etc/nginx/conf.d") for mount in nginx["tmpfs"])  # the rendered templates


@pytest.mark.parametrize("secret", SECRETS)
def test_production_requires_every_secret(secret):
    env = production_env()
    load_stack("production", env)  # complete: fine
    env[secret] = ""
    with pytest.raises(compose.InterpolationError, match=secret):
        load_stack("production", env)
    references = [op for name, op in compose.variable_references(compose.load(PRODUCTION)) if name == secret]
    assert references
    assert all(op == ":?" for op in references), f"{secret} is never defaulted"


def test_every_compose_variable_is_documented():
    documented = documented_variables()
    for file in STACKS["development"] + [PRODUCTION]:
        names = {name for name, _ in compose.variable_references(compose.load(file))}
        assert names - documented == set(), f"{file} uses undocumented variables"


def test_every_setting_and_runner_variable_is_documented():
    settings = (PROJECT_ROOT / "shop" / "settings.py").read_text()
    read_by_settings = set(re.findall(r"\benv(?:\.\w+)?\(\s*\"([A-Z][A-Z0-9_]*)\"", settings))
    assert {"DATABASE_URL", "DJANGO_SECRET_KEY", "BACKUP_PATH"} <= read_by_settings  # the regex works
    ops_scripts = (PROJECT_ROOT / "ops" / "gunicorn.conf.py").read_text()
    ops_scripts += (PROJECT_ROOT / "ops" / "entrypoint.sh").read_text()
    read_by_ops = set(re.findall(r"environ\.get\(\"([A-Z][A-Z0-9_]*)\"|\$\{([A-Z][A-Z0-9_]*)", ops_scripts))
    read_by_ops = {name for pair in read_by_ops for name in pair if name}
    read_by_runner = (
        set(DEFAULT_PORTS) | set(REQUIRED_SECRETS) | {"POSTGRES_USER", "POSTGRES_DB", "DATA_PATH"}
    )
    missing = (read_by_settings | read_by_ops | read_by_runner) - documented_variables()
    assert missing == set(), "add them to .env.example"


def test_env_example_has_no_real_secrets():
    env = example_env()
    for name in SECRETS:
        assert env[name] in ("", "change-me"), name


def test_image_matches_the_stack():
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", dockerfile, flags=re.MULTILINE)
    assert len(stages) >= 2  # multi-stage
    assert set(stages) == {"python:3.13-slim-trixie"}
    pg_major = re.search(r"^ARG PG_MAJOR=(\d+)$", dockerfile, flags=re.MULTILINE).group(1)
    base = compose.load(BASE)
    # The database image (database/Dockerfile) is the postgres image of the image's Debian.
    database_image = re.findall(r"^FROM (\S+)", (PROJECT_ROOT / "database" / "Dockerfile").read_text(), re.M)
    assert database_image == [f"postgres:{pg_major}-trixie"]
    assert base["services"]["database"]["build"]["context"] == "./database"
    assert base["services"]["migrate"]["build"]["args"]["PG_MAJOR"] == pg_major
    # Debian's own archive only: no BuildKit frontend from Docker Hub, no third-party repository.
    assert "# syntax=" not in dockerfile
    assert "sources.list" not in dockerfile
    assert "apt.postgresql.org" not in dockerfile
    assert 'postgresql-client-${PG_MAJOR}"' in dockerfile
    users = re.findall(r"^USER (\S+)", dockerfile, flags=re.MULTILINE)
    assert users[-1] not in ("root", "0")
    assert re.search(r"^    python manage.py collectstatic", dockerfile, flags=re.MULTILINE)
    assert re.search(r"^HEALTHCHECK ", dockerfile, flags=re.MULTILINE)
    ignored = (PROJECT_ROOT / ".dockerignore").read_text().split()
    assert {".env", "data/", "backups/", ".git/"} <= set(ignored)


@pytest.mark.parametrize("stack", STACKS)
def test_the_shop_image_is_built_once(stack):
    services = load_stack(stack)["services"]
    builders = [name for name, service in services.items() if "build" in service]
    # The shop image by migrate; the database image (database/Dockerfile) is a second image.
    assert sorted(builders) == ["database", "migrate"]
    database_image = services["database"]["image"]
    assert {services[name]["image"] for name in ("pgbackrest-db", "pitr-restore")} == {database_image}
    assert services["pgbackrest-repo"]["image"] == services["migrate"]["image"]
    images = {services[name]["image"] for name in APP_SERVICES}
    assert len(images) == 1, images


@pytest.mark.parametrize("stack", STACKS)
def test_no_volume_is_mounted_inside_the_source_directory_except_data(stack):
    """In development the source is mounted on /app: a volume mounted below /app makes Docker
    create its mount point in the checkout, as root (beat's schedule did: data/beat)."""
    for name, service in load_stack(stack)["services"].items():
        for target, (source, _) in mounts(service).items():
            if target.startswith("/app/") and source != ".":
                assert target in ("/app/data/uploads", "/app/data/logs", "/app/static"), (name, target)


def test_nginx_does_not_run_as_root():
    nginx = load_stack("production", production_env())["services"]["nginx"]
    assert nginx["user"].split(":")[0] not in ("", "0", "root")
    assert nginx["command"][:3] == ["nginx", "-e", "stderr"]
    assert "user " not in (PROJECT_ROOT / "nginx" / "nginx.conf").read_text().replace("# No `user`", "")


@pytest.mark.parametrize("name", ["development", "production"])
def test_the_shop_connects_as_the_app_role_and_only_backups_get_the_backup_role(name):
    """database/init/02-roles.sh's roles: every shop process connects as the app role, never as
    POSTGRES_USER; the backup role goes to the backup worker and to the backend (for
    `restore_backup` by hand; ops/entrypoint.sh drops it for gunicorn), nowhere else."""
    env = production_env() if name == "production" else example_env()
    services = load_stack(name, env)["services"]
    for service in APP_SERVICES:
        url = services[service]["environment"]["DATABASE_URL"]
        assert url.startswith(f"postgres://{env['APP_DB_USER']}:{env['APP_DB_PASSWORD']}@database:5432/"), (
            service
        )
    holders = {
        service for service, spec in services.items() if "BACKUP_DATABASE_URL" in spec.get("environment", {})
    }
    assert holders == {"backup", "backend"}
    backup_url = (
        f"postgres://{env['BACKUP_DB_USER']}:{env['BACKUP_DB_PASSWORD']}@database:5432/{env['POSTGRES_DB']}"
    )
    assert services["backup"]["environment"]["BACKUP_DATABASE_URL"] == backup_url
    assert services["backend"]["environment"]["BACKUP_DATABASE_URL"] == backup_url
    database = services["database"]["environment"]
    for variable in ("APP_DB_USER", "APP_DB_PASSWORD", "BACKUP_DB_USER", "BACKUP_DB_PASSWORD"):
        assert database[variable] == env[variable], variable
    init = (PROJECT_ROOT / "database" / "init" / "02-roles.sh").stat().st_mode
    assert init & 0o111, "the postgres image runs an executable *.sh (a sourced one shares its shell)"


def test_the_entrypoint_keeps_the_backup_role_from_the_shops_own_processes(tmp_path):
    """Only the backup worker, and commands run by hand, see BACKUP_DATABASE_URL."""
    import subprocess

    entrypoint = (PROJECT_ROOT / "ops" / "entrypoint.sh").read_text()
    # Stop before the `case` that execs the process: what is left of the environment?
    prefix = entrypoint.split('case "$role" in\n    migrate)', 1)[0]
    script = tmp_path / "entrypoint-prefix.sh"
    script.write_text(prefix + 'echo "${BACKUP_DATABASE_URL:-unset}"\n')
    seen = {}
    for role in ("web", "dev", "worker", "beat", "migrate", "backup-worker", "python"):
        result = subprocess.run(
            ["sh", str(script), role],
            env={"BACKUP_DATABASE_URL": "postgres://backup@db/shop", "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        )
        seen[role] = result.stdout.strip()
    assert seen == {
        "web": "unset",
        "dev": "unset",
        "worker": "unset",
        "beat": "unset",
        "migrate": "unset",
        "backup-worker": "postgres://backup@db/shop",
        "python": "postgres://backup@db/shop",
    }

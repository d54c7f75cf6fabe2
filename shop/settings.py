"""Settings for the shop, read from the environment (see .env.example for every variable).

Development (`DJANGO_DEBUG=true`, set in .env) works out of the box on a machine with PostgreSQL
and Redis on 127.0.0.1; production (the default) refuses to start without a strong secret key.
"""

import os
import re
from datetime import timedelta
from email.utils import getaddresses
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if env.bool("DJANGO_READ_DOT_ENV", default=True) and (BASE_DIR / ".env").is_file():
    env.read_env(BASE_DIR / ".env")

# Off unless asked for: development turns it on explicitly (.env, the compose override).
DEBUG = env.bool("DJANGO_DEBUG", default=False)

DEVELOPMENT_SECRET_KEY = "django-insecure-development-key-do-not-use-in-production"  # noqa: S105
SECRET_KEY_MIN_LENGTH = 50
SECRET_KEY_MIN_UNIQUE_CHARACTERS = 5


def weak_secret_key_reason(key: str) -> str | None:
    """Why `key` is not fit for production, or None: the rules of Django's security.W009."""
    if not key:
        return "it is not set"
    if key == DEVELOPMENT_SECRET_KEY or key.startswith(("django-insecure-", "change-me")):
        return "it is a placeholder or the development default"
    if len(key) < SECRET_KEY_MIN_LENGTH:
        return f"it has {len(key)} characters, fewer than {SECRET_KEY_MIN_LENGTH}"
    if len(set(key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS:
        return f"it has only {len(set(key))} distinct characters"
    return None


SECRET_KEY = env.str("DJANGO_SECRET_KEY", default=DEVELOPMENT_SECRET_KEY)
if not DEBUG and (reason := weak_secret_key_reason(SECRET_KEY)):
    raise ImproperlyConfigured(
        f"DJANGO_SECRET_KEY is missing, too short or still the default while DJANGO_DEBUG is false: "
        f"{reason}. Set it to a random value of at least {SECRET_KEY_MIN_LENGTH} characters, "
        "for example: python -c 'import secrets; print(secrets.token_urlsafe(50))' "
        "(or set DJANGO_DEBUG=true for development)."
    )

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django.contrib.humanize",
    "django.contrib.sitemaps",
    "csp",
    "axes",
    "django_prometheus",
    "shop.accounts",
    "shop.catalog",
    "shop.cart",
    "shop.orders",
    "shop.backups",
]

MIDDLEWARE = [
    # First: /metrics for Prometheus on the backend port, before host checks and redirects (shop/metrics.py).
    "shop.metrics.MetricsEndpointMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Before the session middleware: PostgreSQL/Redis outages answer 503 (shop/outage.py).
    "shop.outage.ServiceOutageMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    # Last, as django-axes asks: turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "shop" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "shop.context_processors.shop",
                "shop.cart.context_processors.cart_summary",
                "shop.catalog.context_processors.categories",
            ],
        },
    },
]

# --- PostgreSQL -------------------------------------------------------------------------
DATABASES = {
    "default": env.db_url("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/shop"),
}
# The same PostgreSQL backend, counting queries and errors for Prometheus (django-prometheus).
DATABASES["default"]["ENGINE"] = "django_prometheus.db.backends.postgresql"
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
# Re-check a persistent connection before use, so the shop recovers by itself when
# PostgreSQL restarts.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# An unreachable server fails fast (503, shop/outage.py) instead of holding a worker.
DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
    "connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=5)
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


# --- Redis: one server, a separate database for each use --------------------------------
def redis_url(db: int) -> str:
    """REDIS_URL with its database number replaced, so broker, cache and sessions never mix."""
    parts = urlsplit(REDIS_URL)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379")
REDIS_DB_BROKER = env.int("REDIS_DB_BROKER", default=0)
REDIS_DB_CACHE = env.int("REDIS_DB_CACHE", default=1)
REDIS_DB_SESSIONS = env.int("REDIS_DB_SESSIONS", default=2)
# Seconds to connect to Redis and for one command: an unreachable Redis fails fast (503).
REDIS_SOCKET_TIMEOUT = env.int("REDIS_SOCKET_TIMEOUT", default=5)
REDIS_CACHE_OPTIONS = {"socket_connect_timeout": REDIS_SOCKET_TIMEOUT, "socket_timeout": REDIS_SOCKET_TIMEOUT}

# shop.redis_cache: Django's Redis backend, reusing one client instead of building one per command.
CACHES = {
    "default": {
        "BACKEND": "shop.redis_cache.RedisCache",
        "LOCATION": redis_url(REDIS_DB_CACHE),
        "KEY_PREFIX": "cache",
        "OPTIONS": REDIS_CACHE_OPTIONS,
    },
    "sessions": {
        "BACKEND": "shop.redis_cache.RedisCache",
        "LOCATION": redis_url(REDIS_DB_SESSIONS),
        "KEY_PREFIX": "session",
        # Sessions (and the carts in them) must outlive the cache default of 300 s.
        "TIMEOUT": None,
        "OPTIONS": REDIS_CACHE_OPTIONS,
    },
}
# Django's cache engine, except that an unreachable Redis is an error (503), never an empty
# session whose cookie is then deleted (shop/sessions.py).
SESSION_ENGINE = "shop.sessions"
SESSION_CACHE_ALIAS = "sessions"
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=60 * 60 * 24 * 14)

# --- Auth -------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "accounts:orders"
LOGOUT_REDIRECT_URL = "catalog:home"
AUTHENTICATION_BACKENDS = [
    # First: refuses every attempt of a locked-out username and address (django-axes).
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Sign-in throttling (django-axes), for the storefront and the admin ---------------------
# After LOGIN_FAILURE_LIMIT wrong passwords for one username from one address, that pair is
# refused for LOGIN_LOCKOUT_MINUTES (429 and a page saying so), even with the right password.
# Attempts live in the database: staff see and clear them in the admin ("Access attempts"),
# or with `manage.py axes_reset_username USERNAME`.
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"
# The client's address: the right-most X-Forwarded-For entry, the one nginx appends
# (shop/accounts/throttling.py); TRUSTED_PROXY_COUNT counts proxies in front of nginx that append
# theirs (a load balancer: 1). Without the header (runserver, tests), REMOTE_ADDR.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
AXES_CLIENT_IP_CALLABLE = "shop.accounts.throttling.client_ip"

# --- i18n -------------------------------------------------------------------------------
# Also the locale prices are formatted for (shop/money.py): "de-de" shows 1.234,50 €.
LANGUAGE_CODE = env.str("LANGUAGE_CODE", default="en-us")
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Files ------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "data" / "static")
STATICFILES_DIRS = [BASE_DIR / "shop" / "static"]
# Product images (content-addressed, never overwritten: shop/catalog/storage.py) on the uploads
# volume (MEDIA_STORAGE=local) or in an S3 bucket (s3), which several backend hosts can share.
MEDIA_STORAGE = env.str("MEDIA_STORAGE", default="local")
MEDIA_S3_BUCKET = env.str("MEDIA_S3_BUCKET", default="")
MEDIA_S3_PREFIX = env.str("MEDIA_S3_PREFIX", default="media").strip("/")
MEDIA_S3_ENDPOINT_URL = env.str("MEDIA_S3_ENDPOINT_URL", default="") or None
MEDIA_S3_REGION = env.str("MEDIA_S3_REGION", default="us-east-1")
MEDIA_S3_ACCESS_KEY_ID = env.str("MEDIA_S3_ACCESS_KEY_ID", default="") or None
MEDIA_S3_SECRET_ACCESS_KEY = env.str("MEDIA_S3_SECRET_ACCESS_KEY", default="") or None


def media_storage(kind: str) -> dict:
    """STORAGES["default"] for MEDIA_STORAGE: every image file goes through it."""
    if kind == "local":
        return {"BACKEND": "shop.catalog.storage.ContentAddressedStorage"}
    if kind != "s3":
        raise ImproperlyConfigured(
            f"MEDIA_STORAGE={kind!r} is not known: use local (the uploads volume) or s3."
        )
    if not MEDIA_S3_BUCKET:
        raise ImproperlyConfigured(
            "MEDIA_STORAGE=s3 needs MEDIA_S3_BUCKET: the bucket that holds the product images."
        )
    return {
        "BACKEND": "shop.catalog.storage.ContentAddressedS3Storage",
        "OPTIONS": {
            "bucket_name": MEDIA_S3_BUCKET,
            "location": MEDIA_S3_PREFIX,
            "endpoint_url": MEDIA_S3_ENDPOINT_URL,
            "region_name": MEDIA_S3_REGION,
            "access_key": MEDIA_S3_ACCESS_KEY_ID,
            "secret_key": MEDIA_S3_SECRET_ACCESS_KEY,
        },
    }


STORAGES = {
    "default": media_storage(MEDIA_STORAGE),
    # Hashed names (shop.1a2b3c4d5e6f.css): nginx lets browsers cache them for a year.
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}
MEDIA_URL = "/media/"
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "data" / "uploads")
# The shop's limit for one image. nginx (`client_max_body_size 11m` in nginx/conf.d) allows
# the multipart overhead on top and refuses anything larger with 413 before it reaches us.
MAX_UPLOAD_BYTES = env.int("MAX_UPLOAD_BYTES", default=10 * 1024 * 1024)
MAX_IMAGE_PIXELS = env.int("MAX_IMAGE_PIXELS", default=40_000_000)
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_PERMISSIONS = 0o644
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o755

# --- Email ------------------------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Shop <shop@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Who gets the backup alerts (mail_admins): "Name <a@example.com>,Other <b@example.com>".
ADMINS = getaddresses(env.list("DJANGO_ADMINS", default=[]))
if any("@" not in address for _, address in ADMINS):
    raise ImproperlyConfigured(
        f"DJANGO_ADMINS={env.str('DJANGO_ADMINS')!r} has an entry without an email address: "
        "write it as 'Name <a@example.com>,Other <b@example.com>'."
    )

# --- Celery -----------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=redis_url(REDIS_DB_BROKER))
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"shop.backups.tasks.*": {"queue": "backups"}}
# No task may run forever: at the soft limit the task gets SoftTimeLimitExceeded (and cleans
# up), at the hard limit the worker process running it is killed. These apply to the quick
# tasks (thumbnails, emails: seconds); the backup tasks have their own, in hours (below).
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=60)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=120)
CELERY_TIMEZONE = "UTC"
# Filled in the Backups section below, once BACKUP_CRONTAB is known.
CELERY_BEAT_SCHEDULE = {}

# --- Security (production values unless DEBUG) ------------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = env.bool("DJANGO_USE_X_FORWARDED_HOST", default=False)
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
# Probes from Docker and the runner talk plain HTTP to gunicorn.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "img-src": [SELF, "data:"],
        "style-src": [SELF],
        "script-src": [SELF],
        "object-src": [NONE],
        "frame-ancestors": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
    },
}

# --- Logging: stdout plus rotated files in LOG_DIR -------------------------------------
LOG_DIR = env.path("LOG_DIR", default=BASE_DIR / "data" / "logs")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FILE_NAME = env.str("LOG_FILE_NAME", default="shop.log")
Path(LOG_DIR).mkdir(parents=True, exist_ok=True)


def _log_file_problem(path: Path) -> str | None:
    """Why the log file cannot be written, or None. The handler opens it only at the first
    record (shop/logfile.py), so a process would otherwise start and fail at its first log line."""
    if path.exists():
        if not path.is_file():
            return "is not a file"
        return None if os.access(path, os.W_OK) else "is not writable by this process"
    return None if os.access(path.parent, os.W_OK | os.X_OK) else "cannot be created: LOG_DIR is not writable"


if problem := _log_file_problem(Path(LOG_DIR) / LOG_FILE_NAME):
    raise ImproperlyConfigured(
        f"The log file {Path(LOG_DIR) / LOG_FILE_NAME} {problem} (LOG_DIR, LOG_FILE_NAME)."
    )
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        "file": {
            # Several processes (gunicorn workers, Celery) write to one file: this handler
            # locks around rotation, which logging.handlers.RotatingFileHandler does not. It is
            # concurrent_log_handler's, imported and opened at the first record (shop/logfile.py).
            "class": "shop.logfile.LazyConcurrentRotatingFileHandler",
            "filename": str(Path(LOG_DIR) / LOG_FILE_NAME),
            "maxBytes": 10 * 1024 * 1024,
            "backupCount": 10,
            "formatter": "plain",
        },
    },
    "root": {"handlers": ["console", "file"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Its banner ("AXES: BEGIN version ...") at every process start would open the log
        # file in every command, for nothing the settings above do not say.
        "axes.apps": {"level": "WARNING"},
    },
}

# --- Backups (see shop/backups) ---------------------------------------------------------
BACKUP_PATH = env.path("BACKUP_PATH", default=BASE_DIR / "backups")
BACKUP_SCHEDULE = env.str("BACKUP_SCHEDULE", default="0 2 * * *")
BACKUP_LOCAL_RETENTION_DAYS = env.int("BACKUP_LOCAL_RETENTION_DAYS", default=7)
BACKUP_S3_RETENTION_DAYS = env.int("BACKUP_S3_RETENTION_DAYS", default=30)
BACKUP_S3_BUCKET = env.str("BACKUP_S3_BUCKET", default="")
BACKUP_S3_PREFIX = env.str("BACKUP_S3_PREFIX", default="shop-backups")
BACKUP_S3_ENDPOINT_URL = env.str("BACKUP_S3_ENDPOINT_URL", default="") or None
BACKUP_S3_REGION = env.str("BACKUP_S3_REGION", default="us-east-1")
BACKUP_S3_ACCESS_KEY_ID = env.str("BACKUP_S3_ACCESS_KEY_ID", default="") or None
BACKUP_S3_SECRET_ACCESS_KEY = env.str("BACKUP_S3_SECRET_ACCESS_KEY", default="") or None
# Encryption at rest with age (shop/backups/crypto.py): public keys only on the shop's hosts.
BACKUP_AGE_RECIPIENTS = env.str("BACKUP_AGE_RECIPIENTS", default="")
BACKUP_ENCRYPT_LOCAL = env.bool("BACKUP_ENCRYPT_LOCAL", default=False)
BACKUP_AGE_IDENTITY_FILE = env.str("BACKUP_AGE_IDENTITY_FILE", default="")
# Each product image and thumbnail copied to the blob store (local and S3) right after the commit
# that stored it (shop/backups/image_archive.py), instead of only at the next backup set.
BACKUP_ARCHIVE_IMAGES = env.bool("BACKUP_ARCHIVE_IMAGES", default=True)
IMAGE_ARCHIVE_MAX_RETRIES = env.int("IMAGE_ARCHIVE_MAX_RETRIES", default=48)
# Alert (mail, /readyz, admin, metrics) when a stored image has waited longer than this to be archived.
IMAGE_ARCHIVE_MAX_AGE_MINUTES = env.float("IMAGE_ARCHIVE_MAX_AGE_MINUTES", default=15)


def _cron_schedule(expression: str) -> str:
    """The expression, checked for its 5 fields; shop/celery.py makes it a Celery crontab (Celery
    itself is not imported here: it would cost every manage.py command ~0.15 s)."""
    fields = expression.split()
    if len(fields) != 5 or not all(re.fullmatch(r"[0-9A-Za-z*,/-]+", field) for field in fields):
        raise ImproperlyConfigured(
            f"BACKUP_SCHEDULE={expression!r} is not a 5-field cron expression "
            "(minute hour day-of-month month day-of-week), for example '0 2 * * *'."
        )
    return " ".join(fields)


BACKUP_CRONTAB = _cron_schedule(BACKUP_SCHEDULE)
# Database-level work (advisory lock, CREATE/RENAME DATABASE) runs here, never in the shop's
# own database: a restore renames that one and terminates its sessions.
BACKUP_MAINTENANCE_DATABASE = env.str("BACKUP_MAINTENANCE_DATABASE", default="postgres")
# The backup role's connection (pg_dump, pg_restore, the lock, CREATE/RENAME/DROP DATABASE),
# given only to the backup worker and the backup/restore commands. Unset (None): DATABASE_URL's
# connection, as before. Its database must be the shop's own (or left out of the URL): the
# shop database is always DATABASES["default"]'s, which is what is dumped and replaced.
BACKUP_DATABASE = env.db_url("BACKUP_DATABASE_URL") if env.str("BACKUP_DATABASE_URL", default="") else None
if BACKUP_DATABASE and BACKUP_DATABASE.get("NAME") not in ("", None, DATABASES["default"]["NAME"]):
    raise ImproperlyConfigured(
        f"BACKUP_DATABASE_URL names the database {BACKUP_DATABASE['NAME']!r}, but the shop's is "
        f"{DATABASES['default']['NAME']!r} (DATABASE_URL): it must name the same database (or none)."
    )
# The newest good backup is "stale" (alert mail, /readyz, admin) when older than this; 0: twice the
# longest gap between two runs of BACKUP_SCHEDULE (48 hours for a daily backup).
BACKUP_MAX_AGE_HOURS = env.float("BACKUP_MAX_AGE_HOURS", default=0)
# How often Celery beat runs the backup alert check (shop/backups/alerts.py), in minutes.
BACKUP_ALERT_CHECK_MINUTES = env.int("BACKUP_ALERT_CHECK_MINUTES", default=15)
# Seconds pg_dump or pg_restore may run before it is killed and the backup, verification or
# restore fails cleanly (0: no limit). A big shop's dump takes hours; a locked table forever.
BACKUP_PG_TIMEOUT = env.int("BACKUP_PG_TIMEOUT", default=6 * 3600)
# pg_dump's --compress: "auto" (zstd:1 where pg_dump is 16 or later, else pg_dump's default),
# "default" (never pass --compress), or a value for --compress ("zstd:9", "gzip:6", "lz4", "none").
BACKUP_DUMP_COMPRESSION = env.str("BACKUP_DUMP_COMPRESSION", default="auto")
# Celery time limits of the backup tasks (backup, upload retry, test restore), in seconds:
# above BACKUP_PG_TIMEOUT, so the dump's own limit ends a stuck run with a clear error first.
BACKUP_TASK_SOFT_TIME_LIMIT = env.int("BACKUP_TASK_SOFT_TIME_LIMIT", default=8 * 3600)
BACKUP_TASK_TIME_LIMIT = env.int("BACKUP_TASK_TIME_LIMIT", default=8 * 3600 + 30 * 60)
CELERY_BEAT_SCHEDULE["backup-set"] = {
    "task": "shop.backups.tasks.scheduled_backup",
    "schedule": BACKUP_CRONTAB,
    "options": {"queue": "backups"},
}
# A test restore of the newest local set (verify_backup --deep), so a set that cannot be
# restored is found on a quiet Sunday, not on the day it is needed. Empty: never.
BACKUP_VERIFY_SCHEDULE = env.str("BACKUP_VERIFY_SCHEDULE", default="30 3 * * 0")
if BACKUP_VERIFY_SCHEDULE:
    CELERY_BEAT_SCHEDULE["verify-latest-set"] = {
        "task": "shop.backups.tasks.verify_latest_set",
        "schedule": _cron_schedule(BACKUP_VERIFY_SCHEDULE),
        "options": {"queue": "backups"},
    }

CELERY_BEAT_SCHEDULE["check-backup-alerts"] = {
    "task": "shop.backups.tasks.check_backup_alerts",
    "schedule": timedelta(minutes=BACKUP_ALERT_CHECK_MINUTES),
    "options": {"queue": "backups"},
}

# --- Point-in-time recovery (shop/backups/pitr, README "Point-in-time recovery") -------------
# WAL archiving with pgBackRest (repo1: BACKUP_PATH/pgbackrest, repo2: S3 when BACKUP_S3_BUCKET
# is set) and physical backups on PITR_FULL_SCHEDULE / PITR_DIFF_SCHEDULE. Off by default: the
# server needs pgBackRest and its archive settings (the runner and the compose db image give both).
PITR_ENABLED = env.bool("PITR_ENABLED", default=False)
# PostgreSQL's archive_timeout: an idle-ish shop still ships a WAL segment this often (the RPO).
PITR_ARCHIVE_TIMEOUT = env.int("PITR_ARCHIVE_TIMEOUT", default=60)
PITR_FULL_SCHEDULE = env.str("PITR_FULL_SCHEDULE", default="0 1 * * 0")  # weekly, Sunday 01:00 UTC
PITR_DIFF_SCHEDULE = env.str("PITR_DIFF_SCHEDULE", default="0 1 * * 1-6")  # the other days
# Alert (mail, /readyz, admin, metrics) when a finished WAL segment waits longer than this.
PITR_ARCHIVE_MAX_AGE_MINUTES = env.float("PITR_ARCHIVE_MAX_AGE_MINUTES", default=5)
# pgBackRest speaks HTTPS only to S3; false accepts a self-signed certificate (tests, a LAN MinIO).
PITR_S3_VERIFY_TLS = env.bool("PITR_S3_VERIFY_TLS", default=True)
# A CA file the S3 endpoint's certificate is verified against (a private CA), instead of turning
# the check off.
PITR_S3_CA_FILE = env.str("PITR_S3_CA_FILE", default="")
# WAL kept in pg_wal while a repository is unreachable; beyond it pgBackRest drops WAL (logged)
# rather than fill the database's disk: the shop keeps taking orders, PITR has a gap.
PITR_ARCHIVE_QUEUE_MAX = env.str("PITR_ARCHIVE_QUEUE_MAX", default="1GiB")
# Where pgbackrest.conf is (the runner writes DATA_PATH/run/pgbackrest/pgbackrest.conf).
PITR_PGBACKREST_CONFIG = env.str("PITR_PGBACKREST_CONFIG", default="/etc/pgbackrest/pgbackrest.conf")
# pgBackRest runs as this OS user when the shop runs as root (it owns the repository).
PITR_OS_USER = env.str("PITR_OS_USER", default="postgres")
# The superuser's password, for pgBackRest's connection (pg1-user is POSTGRES_USER).
PITR_PG_PASSWORD = env.str("POSTGRES_PASSWORD", default="")
# For restore_backup --to: the live cluster's data directory and the PostgreSQL server binaries.
PITR_PG_DATA = env.str("PITR_PG_DATA", default="")
PITR_PG_BIN = env.str("PITR_PG_BIN", default="")
if PITR_ENABLED:
    CELERY_BEAT_SCHEDULE["pitr-full-backup"] = {
        "task": "shop.backups.tasks.pitr_backup",
        "schedule": _cron_schedule(PITR_FULL_SCHEDULE),
        "args": ["full"],
        "options": {"queue": "backups"},
    }
    if PITR_DIFF_SCHEDULE:
        CELERY_BEAT_SCHEDULE["pitr-diff-backup"] = {
            "task": "shop.backups.tasks.pitr_backup",
            "schedule": _cron_schedule(PITR_DIFF_SCHEDULE),
            "args": ["diff"],
            "options": {"queue": "backups"},
        }

# --- Outages -------------------------------------------------------------------------------
# While PostgreSQL or Redis is unreachable the shop answers 503 with this Retry-After (seconds).
SERVICE_UNAVAILABLE_RETRY_AFTER = env.int("SERVICE_UNAVAILABLE_RETRY_AFTER", default=10)

# --- Shop -------------------------------------------------------------------------------
SHOP_NAME = env.str("SHOP_NAME", default="Django Shop")
SHOP_CURRENCY = env.str("SHOP_CURRENCY", default="EUR")
# Shown to customers who pay by bank transfer, e.g. "IBAN DE00 0000 0000 0000 0000 00 (Shop GmbH)".
SHOP_BANK_ACCOUNT = env.str("SHOP_BANK_ACCOUNT", default="")
PRODUCTS_PER_PAGE = 12
# A product with this many or fewer left shows "Only N left" (0 shows "Sold out").
LOW_STOCK_THRESHOLD = env.int("LOW_STOCK_THRESHOLD", default=5)
EMAIL_SUBJECT_PREFIX = f"[{SHOP_NAME}] "
# Seconds a rendered catalog fragment stays in Redis (shop/catalog/cache.py). A catalog change
# makes it unused at once (a new catalog version); this only bounds the memory old ones hold.
CATALOG_FRAGMENT_TIMEOUT = env.int("CATALOG_FRAGMENT_TIMEOUT", default=600)

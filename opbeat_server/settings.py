"""Settings for Opbeat Server: every environment read happens here, and nowhere else.

Each setting has a default that serves the embedded mode (SQLite and an on-disk queue in
SQLite under ``var/``), so ``manage.py opbeat_run`` works on a fresh clone with no server installed.
Production sets ``DATABASE_URL``, ``BROKER_URL`` and ``REDIS_URL``.
"""

from __future__ import annotations

import os
import secrets
import stat
import sys
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
import dj_email_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("OPBEAT_VAR_DIR", BASE_DIR / "var"))


def _var_dir_make_private(path: Path) -> None:
    """var/ holds the secret key, the SQLite database, mail (with password-reset links), the file
    cache and the queue: only the server's user may read them. A umask of 077 makes what this
    process and its children create private (SQLite, Django's mail and cache backends and kombu
    all create files through it); an older install, found with var/ open to others, is
    tightened once. Only what the server itself keeps there is changed, in case OPBEAT_VAR_DIR
    names a directory that holds other things too."""
    os.umask(0o077)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not stat.S_IMODE(path.stat().st_mode) & 0o077:
        return
    patterns = ("secret_key", "opbeat.sqlite3*", "mail", "cache", "queue", "static", "celerybeat-schedule*")
    try:
        for top in (entry for pattern in patterns for entry in path.glob(pattern)):
            for entry in [top, *(top.rglob("*") if top.is_dir() and not top.is_symlink() else ())]:
                if not entry.is_symlink():  # chmod would change what the link points to
                    entry.chmod(0o700 if entry.is_dir() else 0o600)
        path.chmod(0o700)
    except PermissionError as exc:
        # Not ours to change (an operator's shared directory): say so rather than refuse to start.
        print(f"opbeat: could not make {path} private to this user: {exc}", file=sys.stderr)


_var_dir_make_private(VAR_DIR)


def _env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _secret_key() -> str:
    # Embedded mode: generate once and keep it under var/, so sessions survive restarts.
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = _env_bool("DEBUG", False)
BASE_URL = os.environ.get("BASE_URL", "http://127.0.0.1:8000").rstrip("/")
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",") if h.strip()]
# Tests and CI need to know whether a missing server is a skip or a failure.
REQUIRE_SERVICES = _env_bool("REQUIRE_SERVICES", False)

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "accounts",
    "intake",
    "processing",
    "dashboards",
    # Only for its management commands (opbeat_run).
    "opbeat_server",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "opbeat_server.middleware.content_security_policy_middleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "opbeat_server.urls"
WSGI_APPLICATION = "opbeat_server.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'opbeat.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=600)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while the worker writes; a busy timeout instead of
    # "database is locked" when both write at once.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = 5


def _postgres_driver_pin() -> None:
    """Django's PostgreSQL backend takes psycopg 3 whenever it is importable; ours is psycopg2.

    psycopg 3 is in the test extra (the agent instruments it), and with it installed Django would
    run the server on it: in tests and CI, not in production, and slower where it counts (its
    Python-side query conversion of the digest's bulk statements: bench/digest measured 10.9k
    events/s per core against 17k on psycopg2). Hiding it while the backend loads pins the
    choice; the module is back for anyone who imports it afterwards.
    """
    import sys

    missing = object()
    saved = sys.modules.get("psycopg", missing)
    sys.modules["psycopg"] = None  # makes "import psycopg" raise ImportError
    try:
        import django.db.backends.postgresql.base  # noqa: F401 - decides the driver, once
    finally:
        if saved is missing:
            del sys.modules["psycopg"]
        else:
            sys.modules["psycopg"] = saved


if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and os.environ.get("OPBEAT_PG_DRIVER", "psycopg2") == "psycopg2":
    _postgres_driver_pin()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

# --- Broker ---------------------------------------------------------------------------------
# Embedded default: a queue in one SQLite file under var/queue (opbeat_server/queue_sqlite.py).
# A message stays there until the worker acknowledges it after its database commit, and a killed
# worker's messages are delivered again, so nothing the intake answered 202 for is lost.
QUEUE_DIR = VAR_DIR / "queue"
BROKER_URL = os.environ.get("BROKER_URL") or "sqlite-queue://"
BROKER_IS_EMBEDDED = BROKER_URL.startswith("sqlite-queue://")
if BROKER_IS_EMBEDDED:
    import opbeat_server.queue_sqlite  # noqa: F401 - registers the sqlite-queue:// transport with kombu

    QUEUE_DIR.mkdir(parents=True, exist_ok=True)
    BROKER_TRANSPORT_OPTIONS = {"path": str(QUEUE_DIR / "queue.sqlite3")}
elif BROKER_URL.startswith("filesystem://"):
    # kombu's filesystem transport, the embedded queue before: it deletes a message when it is
    # fetched, so a killed worker loses what it held. Kept for bench/embedded's comparison.
    QUEUE_DIR.mkdir(parents=True, exist_ok=True)
    BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(QUEUE_DIR),
        "data_folder_out": str(QUEUE_DIR),
        "store_processed": False,
        "control_folder": str(QUEUE_DIR / "control"),
    }
else:
    # Publisher confirms: a 202 from the intake means RabbitMQ has the message on disk.
    BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}

# --- Cache and rate limits ------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    # No Redis: a file cache is shared by the processes of one machine (embedded mode).
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

# --- Email ----------------------------------------------------------------------------------
EMAIL_URL = os.environ.get("EMAIL_URL", "")
if EMAIL_URL:
    _email = dj_email_url.parse(EMAIL_URL)
    EMAIL_BACKEND = _email["EMAIL_BACKEND"]
    EMAIL_HOST = _email["EMAIL_HOST"]
    EMAIL_PORT = _email["EMAIL_PORT"]
    EMAIL_HOST_USER = _email["EMAIL_HOST_USER"]
    EMAIL_HOST_PASSWORD = _email["EMAIL_HOST_PASSWORD"]
    EMAIL_USE_TLS = _email["EMAIL_USE_TLS"]
    EMAIL_USE_SSL = _email["EMAIL_USE_SSL"]
elif os.environ.get("EMAIL_HOST"):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = os.environ["EMAIL_HOST"]
    EMAIL_PORT = _env_int("EMAIL_PORT", 25)
    EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = _env_bool("EMAIL_USE_TLS", False)
else:
    # Embedded mode: mail lands as files under var/mail, readable by a person.
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = str(VAR_DIR / "mail")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Opbeat Server <opbeat@localhost>")

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = BROKER_URL
CELERY_BROKER_TRANSPORT_OPTIONS = BROKER_TRANSPORT_OPTIONS
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_DEFAULT_QUEUE = "default"
# Batches buffer up to flush_every unacked messages, so the prefetch window must hold them.
CELERY_WORKER_PREFETCH_MULTIPLIER = _env_int("CELERY_WORKER_PREFETCH_MULTIPLIER", 1000)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Opbeat limits: one table of defaults -----------------------------------------------------
OPBEAT_LIMITS = {
    # Intake size caps, in bytes: compressed as received, and decompressed.
    "max_compressed_bytes": _env_int("OPBEAT_MAX_COMPRESSED_BYTES", 1 * 1024 * 1024),
    "max_error_bytes": _env_int("OPBEAT_MAX_ERROR_BYTES", 1 * 1024 * 1024),
    "max_transactions_bytes": _env_int("OPBEAT_MAX_TRANSACTIONS_BYTES", 16 * 1024 * 1024),
    # A transactions body as received: the original agent sends a minute at 600 requests/s as
    # ~10 MB of JSON, ~2 MB compressed; twice that leaves room for a busier process.
    "max_transactions_compressed_bytes": _env_int("OPBEAT_MAX_TRANSACTIONS_COMPRESSED_BYTES", 4 * 1024 * 1024),
    # Seconds a client has to send a whole body once its headers are in (408 past them): a client
    # trickling a body would otherwise hold a server thread. 4 MB in 15 s needs ~2.2 Mbit/s.
    "body_read_seconds": float(os.environ.get("OPBEAT_BODY_READ_SECONDS", "15")),
    # Performance: transaction names per app (later ones are counted as `_other`), and how long
    # rollup rows of each resolution and sampled traces are kept.
    "transaction_names_per_app": _env_int("OPBEAT_TRANSACTION_NAMES_PER_APP", 1000),
    "transaction_minute_retention_hours": _env_int("OPBEAT_TRANSACTION_MINUTE_RETENTION_HOURS", 48),
    "transaction_hour_retention_days": _env_int("OPBEAT_TRANSACTION_HOUR_RETENTION_DAYS", 35),
    "transaction_day_retention_days": _env_int("OPBEAT_TRANSACTION_DAY_RETENTION_DAYS", 400),
    "transaction_trace_retention_days": _env_int("OPBEAT_TRANSACTION_TRACE_RETENTION_DAYS", 14),
    # A release with its commits, files and hunks (opbeat-agent release), decompressed.
    "max_release_bytes": _env_int("OPBEAT_MAX_RELEASE_BYTES", 8 * 1024 * 1024),
    "max_json_depth": 32,
    "max_frames": 250,
    # Default per-app quota; each App row can override it.
    "default_events_per_minute": _env_int("OPBEAT_DEFAULT_EVENTS_PER_MINUTE", 6000),
    # Token cache: a rotated token stops working within this many seconds.
    "token_cache_seconds": _env_int("OPBEAT_TOKEN_CACHE_SECONDS", 30),
    # Events kept in full per issue, and how long any event is kept.
    "events_kept_per_issue": _env_int("OPBEAT_EVENTS_KEPT_PER_ISSUE", 100),
    "event_retention_days": _env_int("OPBEAT_EVENT_RETENTION_DAYS", 90),
    # Worker batching.
    "digest_batch_size": _env_int("OPBEAT_DIGEST_BATCH_SIZE", 500),
    "digest_flush_seconds": float(os.environ.get("OPBEAT_DIGEST_FLUSH_SECONDS", "0.5")),
}

# Webhooks are URLs typed by app owners and called by the worker: by default only public
# addresses, so no tenant can make the worker call into this network (SSRF).
OPBEAT_WEBHOOK_ALLOW_PRIVATE = _env_bool("OPBEAT_WEBHOOK_ALLOW_PRIVATE", False)

# --- Auth and the rest ------------------------------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns on every start when it is missing
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
SESSION_COOKIE_HTTPONLY = True
# The intake streams bodies itself with its own caps; this guards the form views.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440

# --- Security: client addresses, login and reset limits, HTTPS, Content-Security-Policy -------
# Reverse proxies in front of the web process, each appending to X-Forwarded-For. 0 (the default):
# the client is REMOTE_ADDR and X-Forwarded-For is ignored, so no client can choose the address it
# is counted under. N: the client is the Nth X-Forwarded-For entry from the right
# (opbeat_server/client_ip.py). Set it to the real number: too high lets clients pick addresses.
OPBEAT_TRUSTED_PROXY_COUNT = _env_int("OPBEAT_TRUSTED_PROXY_COUNT", 0)

# The limits on logins and password-reset mails, all here: (attempts, seconds of the fixed window,
# accounts/throttle.py). A lock lasts until its window ends, never longer. Every login that
# reaches the password hasher is counted before it runs, so a flood past a limit costs no hashing.
OPBEAT_AUTH_LIMITS = {
    # One account from one address: a person mistyping gets ten tries, then waits at most 15 min
    # (or resets the password, which clears it). Other addresses are not affected.
    "login_account_address": (10, 15 * 60),
    # One address, whichever accounts (credential stuffing, and the hasher's CPU under a flood).
    # Successful logins count too; 30 in 5 min is more than an office behind one NAT needs.
    "login_address": (30, 5 * 60),
    # One account from every address: high and short, so a botnet guessing one password is slowed
    # to 100 guesses per 5 min while nobody can keep the owner locked out for longer than that.
    "login_account": (100, 5 * 60),
    # Password-reset mails to one address, and requests from one client address.
    "password_reset_email": (3, 60 * 60),
    "password_reset_address": (10, 60 * 60),
    # New accounts from one address (each runs the hasher and mails a verification link).
    "signup_address": (10, 60 * 60),
}

# HTTPS: when BASE_URL is https the production defaults below follow from it; each can be set.
_BASE_URL_HTTPS = BASE_URL.startswith("https://")
SESSION_COOKIE_SECURE = _env_bool("SESSION_COOKIE_SECURE", _BASE_URL_HTTPS)
CSRF_COOKIE_SECURE = _env_bool("CSRF_COOKIE_SECURE", _BASE_URL_HTTPS)
SECURE_HSTS_SECONDS = _env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if _BASE_URL_HTTPS else 0)
# Opt-in: both bind every subdomain of the host to HTTPS, and preload lists are slow to leave.
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = _env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_SSL_REDIRECT = _env_bool("SECURE_SSL_REDIRECT", _BASE_URL_HTTPS)
# Agents post to /api/, and a redirect would lose the body (the event). opbeat_server.wsgi serves
# the intake without middleware, so no redirect reaches it there; this keeps it so under any other
# handler. Comma-separated regexes without the leading slash; the operator may list others
# (a health check path), or set it empty to redirect everything.
SECURE_REDIRECT_EXEMPT = [
    p.strip() for p in os.environ.get("OPBEAT_SSL_REDIRECT_EXEMPT", r"^api/").split(",") if p.strip()
]
# Behind a TLS-terminating proxy, the header it sets to say the client used HTTPS, e.g.
# "X-Forwarded-Proto" (value "https") or "X-Forwarded-Proto: https". Never trusted by default: a
# client could send it itself. Without it behind such a proxy, SECURE_SSL_REDIRECT loops.
OPBEAT_PROXY_SSL_HEADER = os.environ.get("OPBEAT_PROXY_SSL_HEADER", "").strip()
if OPBEAT_PROXY_SSL_HEADER:
    _header, _, _value = OPBEAT_PROXY_SSL_HEADER.partition(":")
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _header.strip().upper().replace("-", "_"), _value.strip() or "https")
# Origins, not URLs: a BASE_URL with a path would otherwise match no request's Origin header.
CSRF_TRUSTED_ORIGINS = ["{0.scheme}://{0.netloc}".format(urlsplit(BASE_URL))]
# check --deploy warns while includeSubDomains or preload is off: they are off on purpose (above).
SILENCED_SYSTEM_CHECKS = [
    *(["security.W005"] if not SECURE_HSTS_INCLUDE_SUBDOMAINS else []),
    *(["security.W021"] if not SECURE_HSTS_PRELOAD else []),
]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Sent with every response by opbeat_server/middleware.py. No page runs inline script or inline
# style (charts are SVG with presentation attributes), so everything comes from this host.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.request": {"level": "ERROR"}},
}

"""GreenGate settings: every knob comes from the environment (documented in .env.example)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import secrets
from decimal import Decimal
from pathlib import Path

from greengate_site.database import database_from_url, embedded_database
from greengate_site.env import (
    ConfigError,
    body_timeout_seconds,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_str,
    env_url,
    header_timeout_seconds,
    keepalive_timeout_seconds,
    shutdown_grace_seconds,
)
from providers.env_config import provider_configs

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("DATA_DIR", str(BASE_DIR / "data"))).resolve()


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept under data/."""
    configured = env_str("SECRET_KEY")
    if configured:
        if len(configured) < 32:
            raise ConfigError("SECRET_KEY must be at least 32 characters long")
        return configured
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", ["http://127.0.0.1", "http://localhost"])

HOST = env_str("HOST", "127.0.0.1")
PORT = env_int("PORT", 8000, minimum=1, maximum=65535)
LOG_LEVEL = env_choice("LOG_LEVEL", "info", {"debug", "info", "warning", "error", "critical"}).upper()

# Request limits: a body over MAX_REQUEST_BYTES is refused before it is read (see greengate_site/server/).
MAX_REQUEST_BYTES = env_int("MAX_REQUEST_BYTES", 4 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BYTES  # Django's own cap must not undercut ours
# Deadlines the server enforces (see greengate_site/server/); read here too so a bad value stops every entry point.
HEADER_TIMEOUT_SECONDS = header_timeout_seconds()
BODY_TIMEOUT_SECONDS = body_timeout_seconds()
KEEPALIVE_TIMEOUT_SECONDS = keepalive_timeout_seconds()
SHUTDOWN_GRACE_SECONDS = shutdown_grace_seconds()
MAX_COMPLETION_TOKENS = env_int("MAX_COMPLETION_TOKENS", 131_072, minimum=1)
# Requests per minute: the default plan's per-tenant limit, and each unauthenticated client address's.
RATE_LIMIT_PER_MINUTE = env_int("RATE_LIMIT_PER_MINUTE", 60, minimum=1)
# Tokens per minute of the default plan (blank in admin: unlimited).
TOKENS_PER_MINUTE = env_int("TOKENS_PER_MINUTE", 1_000_000, minimum=1)
# What a request that names no maximum is assumed to generate, per choice, when reserving tokens and budget.
DEFAULT_MAX_OUTPUT_TOKENS = env_int("DEFAULT_MAX_OUTPUT_TOKENS", 4096, minimum=1)
# What a request whose price is unknown counts against budgets (reserved, then spent): never free.
try:
    BUDGET_UNPRICED_REQUEST_USD = Decimal(env_str("BUDGET_UNPRICED_REQUEST_USD", "0.01"))
except ArithmeticError:
    raise ConfigError("BUDGET_UNPRICED_REQUEST_USD must be a decimal number of US dollars, e.g. 0.01") from None
if not BUDGET_UNPRICED_REQUEST_USD.is_finite() or not 0 <= BUDGET_UNPRICED_REQUEST_USD <= 1000:
    raise ConfigError("BUDGET_UNPRICED_REQUEST_USD must be between 0 and 1000")
# Proxies in front of GreenGate whose X-Forwarded-For is believed (addresses or CIDR ranges); by default
# none, and the client address is the connection's.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])
try:
    TRUSTED_PROXY_NETWORKS = tuple(ipaddress.ip_network(p, strict=False) for p in TRUSTED_PROXIES)
except ValueError as _exc:
    raise ConfigError(f"TRUSTED_PROXIES: {_exc}") from None

# Browser origins allowed to call the API (exact scheme://host[:port], or *); none by default.
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", [])
for _origin in CORS_ALLOWED_ORIGINS:
    if _origin != "*" and not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+", _origin):
        raise ConfigError(f"CORS_ALLOWED_ORIGINS: {_origin!r} must look like https://app.example.com (no path)")

# Circuit breakers per deployment (defaults; each provider may override them in admin).
BREAKER_FAILURES = env_int("BREAKER_FAILURES", 5, minimum=1, maximum=1000)
BREAKER_FAILURE_RATE = env_float("BREAKER_FAILURE_RATE", 0.5, minimum=0.01)
if BREAKER_FAILURE_RATE > 1:
    raise ConfigError("BREAKER_FAILURE_RATE must be at most 1 (a share of calls)")
BREAKER_MIN_REQUESTS = env_int("BREAKER_MIN_REQUESTS", 20, minimum=1)
BREAKER_WINDOW_SECONDS = env_float("BREAKER_WINDOW_SECONDS", 60.0, minimum=1.0)
BREAKER_OPEN_SECONDS = env_float("BREAKER_OPEN_SECONDS", 30.0, minimum=0.1)
BREAKER_HALF_OPEN_PROBES = env_int("BREAKER_HALF_OPEN_PROBES", 1, minimum=1, maximum=100)

# Retrying a model's deployments after each failed retryably: extra rounds, and the longest wait between
# them (an upstream asking for a longer Retry-After gets its 429 passed on instead).
UPSTREAM_RETRIES = env_int("UPSTREAM_RETRIES", 1, minimum=0, maximum=5)
UPSTREAM_RETRY_MAX_WAIT = env_float("UPSTREAM_RETRY_MAX_WAIT", 2.0, minimum=0.0)

# Upstream calls.
UPSTREAM_CONNECT_TIMEOUT = env_float("UPSTREAM_CONNECT_TIMEOUT", 5.0, minimum=0.1)
UPSTREAM_TIMEOUT = env_float("UPSTREAM_TIMEOUT", 120.0, minimum=1.0)
UPSTREAM_MAX_CONNECTIONS = env_int("UPSTREAM_MAX_CONNECTIONS", 1000, minimum=1)

# Providers bootstrapped from the environment, as the adapter registry declares them; admin edits apply live.
LLM_PROVIDER_SEQUENCE, PROVIDER_CONFIGS = provider_configs()
DEMO_MODEL = "greengate-demo"
DEMO_EMBEDDING_MODEL = "greengate-demo-embedding"

# Provider credentials are encrypted at rest with this Fernet key (derived from SECRET_KEY if unset).
ENCRYPTION_KEY = env_str("GREENGATE_ENCRYPTION_KEY")

# How often each process checks the shared config version; admin edits show within this.
CONFIG_REFRESH_SECONDS = env_float("CONFIG_REFRESH_SECONDS", 0.5, minimum=0.05)

REDIS_URL = env_url("REDIS_URL", schemes={"redis", "rediss", "unix"})
# Every GreenGate key starts with this, so deployments (and test runs) can share one Redis database.
REDIS_KEY_PREFIX = env_str("REDIS_KEY_PREFIX", "greengate:")
# No glob characters: the prefix is also a SCAN pattern when a test run cleans up after itself.
if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", REDIS_KEY_PREFIX) or not REDIS_KEY_PREFIX.endswith(":"):
    raise ConfigError(
        "REDIS_KEY_PREFIX must be 1-64 letters, digits or _ . : - and end with ':', "
        f"e.g. 'greengate:', got {REDIS_KEY_PREFIX!r}"
    )

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "channels",
    "tenants",
    "providers",
    "ledger",
    "gateway",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it answers a locked-out login itself.
    "axes.middleware.AxesMiddleware",
]

# Admin logins: after ADMIN_LOGIN_FAILURES failed attempts for one username from one address, that pair is
# locked out for ADMIN_LOCKOUT_MINUTES (django-axes; attempts are kept in the database, shown in admin).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("ADMIN_LOGIN_FAILURES", 5, minimum=1, maximum=1000)
AXES_COOLOFF_TIME = datetime.timedelta(minutes=env_int("ADMIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The client's address as the API sees it: the connection's, or TRUSTED_PROXIES' X-Forwarded-For.
AXES_CLIENT_IP_CALLABLE = "gateway.admission.client_address.request_address"

ROOT_URLCONF = "greengate_site.urls"
ASGI_APPLICATION = "greengate_site.asgi.application"

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

_database_url = env_str("DATABASE_URL")
DATABASES = {"default": database_from_url(_database_url) if _database_url else embedded_database(DATA_DIR)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": REDIS_KEY_PREFIX + "django",  # under our prefix, so a test run's cleanup covers it
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Sessions in the database, so an admin's messages never ride in a cookie.
SESSION_ENGINE = "django.contrib.sessions.backends.db"
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"

REST_FRAMEWORK = {
    # The API authenticates GreenGate keys inside the pipeline; DRF's session/basic auth stay off.
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_THROTTLE_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [],
    "EXCEPTION_HANDLER": "gateway.transport.views.openai_exception_handler",
}

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not REDIS_URL and "CELERY_BROKER_URL" not in os.environ)
CELERY_TASK_IGNORE_RESULT = True
# Periodic tasks (ledger rollups) run in each gateway process's own beat thread, so a bare `make run` keeps the
# reports current; set false where dedicated `celery beat` and worker processes run them (docker-compose).
PERIODIC_TASKS_IN_PROCESS = env_bool("PERIODIC_TASKS_IN_PROCESS", True)
ROLLUP_INTERVAL_SECONDS = env_float("ROLLUP_INTERVAL_SECONDS", 60.0, minimum=1.0)
CELERY_BEAT_SCHEDULE = {
    "refresh-ledger-rollups": {"task": "ledger.tasks.refresh_rollups", "schedule": ROLLUP_INTERVAL_SECONDS},
    "purge-idempotency-keys": {"task": "gateway.tasks.purge_idempotency_keys", "schedule": 3600.0},
}

# The ledger's spool (ledger.spool): each row is on local disk before its answer is finished, until PostgreSQL
# has it. Keep it on a local disk that survives restarts of the gateway.
LEDGER_SPOOL_DIR = Path(env_str("LEDGER_SPOOL_DIR", str(DATA_DIR / "spool"))).resolve()
# How often a gateway looks for segments left by processes that died, to replay them.
LEDGER_SPOOL_SCAN_SECONDS = env_float("LEDGER_SPOOL_SCAN_SECONDS", 5.0, minimum=0.05)
# Rows held in memory while PostgreSQL is away; beyond this they wait on disk only.
LEDGER_MEMORY_ROWS = env_int("LEDGER_MEMORY_ROWS", 20_000, minimum=1)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "greengate_site.request_context.RequestIdFilter"}},
    "handlers": {
        # The request id is read here, on the logging thread's caller, where its context variable is set.
        "stdout": {"()": "greengate_site.logs.StdoutQueueHandler", "filters": ["request_id"]},
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"level": LOG_LEVEL},
        "daphne": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "pgserver": {"level": "WARNING"},
    },
}

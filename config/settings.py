"""The one settings module. Every environment-dependent value goes through config.env helpers.

Embedded default (nothing set): SQLite in WAL mode under var/ and kombu's filesystem broker, so the
platform runs on one machine with nothing installed but Python. Production sets DATABASE_URL,
CELERY_BROKER_URL, SECRET_KEY and DEBUG=0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("BEAVERLAB_VAR_DIR", str(BASE_DIR / "var")))
SHARED_DATA_DIR = Path(env_str("BEAVERLAB_SHARED_DATA", str(BASE_DIR.parent / "shared" / "data")))

_INSECURE_DEFAULT_KEY = "django-insecure-dev-key-only-for-local-use-never-in-production"
DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_str("SECRET_KEY", _INSECURE_DEFAULT_KEY)
if not DEBUG and SECRET_KEY in {"", _INSECURE_DEFAULT_KEY}:
    raise ImproperlyConfigured("SECRET_KEY must be set in the environment when DEBUG is off")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "annotate",
    "moderation",
    "training",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

# --- Database -------------------------------------------------------------------------------------
_SQLITE_PATH = VAR_DIR / "db.sqlite3"
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{_SQLITE_PATH}")
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 0))}
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
if not DATABASES["default"].get("NAME"):
    raise ImproperlyConfigured("DATABASE_URL names no database: end it with /<database name>")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while the Celery worker writes; IMMEDIATE transactions take the
    # write lock up front so two writers queue on busy_timeout instead of failing on lock upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The worker loop's statements are prepared once per connection on PostgreSQL (config/db.py). Turn it
# off behind a pooler in transaction mode (PgBouncer), where a connection's prepared statements vanish.
DB_PREPARED_STATEMENTS = env_bool("DB_PREPARED_STATEMENTS", True)
# next and stage-1 submit as one statement each on PostgreSQL (annotate/fastpath.py); 0 uses the
# general ORM services everywhere (the engine's tests run both).
WORKER_LOOP_FAST_PATH = env_bool("WORKER_LOOP_FAST_PATH", True)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "frontend:project-list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
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

# An S3-compatible bucket instead of MEDIA_ROOT for media (dataset snapshots), through django-storages;
# credentials come from the usual AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. See docs/exports.md.
_S3_BUCKET = env_str("STORAGE_S3_BUCKET", "")
if _S3_BUCKET:
    _S3_STORAGE: dict[str, Any] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": _S3_BUCKET,
            "endpoint_url": env_str("STORAGE_S3_ENDPOINT_URL", "") or None,
            "region_name": env_str("STORAGE_S3_REGION", "") or None,
            "location": env_str("STORAGE_S3_PREFIX", ""),
        },
    }
    STORAGES["default"] = _S3_STORAGE

# Uploads larger than this spool to disk, so a 330,000-row import never sits whole in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
IMPORT_MAX_FIELD_BYTES = env_int("IMPORT_MAX_FIELD_BYTES", 64 * 1024, minimum=1)
IMPORT_MAX_ERRORS = 100

# --- Security (production) ------------------------------------------------------------------------
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY", False) else None
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- REST framework ---------------------------------------------------------------------------------
_API_RENDERERS = ["rest_framework.renderers.JSONRenderer"]
if DEBUG:
    _API_RENDERERS.append("rest_framework.renderers.BrowsableAPIRenderer")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "config.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "config.api.AutoSchema",
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    "DEFAULT_RENDERER_CLASSES": _API_RENDERERS,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "BeaverLab API",
    "DESCRIPTION": "Two-stage safety annotation: projects, imports, tasks, labels, agreement, exports.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ExportFormatEnum": "annotate.models.ExportFormat",
        "FileFormatEnum": "annotate.models.FileFormat",
        "ImportFormatEnum": "annotate.importing.SUPPORTED_FORMATS",
        "AssignmentStatusEnum": "annotate.models.AssignmentStatus",
        "SnapshotStatusEnum": "annotate.models.SnapshotStatus",
        "ImportStatusEnum": "annotate.models.ImportRecord.Status",
        "JobStatusEnum": "training.models.JobStatus",
        "JobKindEnum": "training.models.JobKind",
    },
    # Swagger UI from our own static files: the docs page must work with no network.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Celery -----------------------------------------------------------------------------------------
_BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", "") or None
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # kombu's filesystem transport: one folder for both directions serves every queue on one machine.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_BROKER_DIR / "queue"),
        "data_folder_out": str(_BROKER_DIR / "queue"),
        "processed_folder": str(_BROKER_DIR / "processed"),
        # Exchange tables; kombu writes them to the working directory unless told otherwise.
        "control_folder": str(_BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # Longer than the longest training job, or Redis hands an unacknowledged job to a second worker.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 48 * 3600, minimum=60)
    }
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Training runs on GPU workers only (`-Q gpu`, docker-compose's worker-gpu).
CELERY_TASK_ROUTES = {
    "training.run_job": {"queue": "gpu"},
    # Scoring a project loads the moderation model with torch: where the models are.
    "moderation.score_project": {"queue": "gpu"},
}


# --- Cache ------------------------------------------------------------------------------------------
# One cache shared by every process (web, beat, the workers): the agreement-recompute debounce and the
# worker's open-items figure must hold across them, which a per-process memory cache does not. Redis when
# the broker is Redis (the broker's server, the next database number, so that clearing the cache never
# touches the queues), the database otherwise (the embedded default; its table comes with the migrations).
# CACHE_URL names another: redis://host:port/db, or db:// for the database.
def _default_cache_url(broker: str) -> str:
    parsed = urlsplit(broker)
    if parsed.scheme not in ("redis", "rediss"):
        return "db://"
    try:
        broker_db = int(parsed.path.strip("/") or 0)
    except ValueError:
        raise ImproperlyConfigured(
            f"CELERY_BROKER_URL names no Redis database number: {parsed.path!r}"
        ) from None
    return urlunsplit(parsed._replace(path=f"/{broker_db + 1 if broker_db < 15 else broker_db - 1}"))


CACHE_URL = env_str("CACHE_URL", _default_cache_url(CELERY_BROKER_URL))
CACHE_TABLE = "beaverlab_cache"
if CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES: dict[str, dict[str, Any]] = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": "beaverlab",
        }
    }
elif CACHE_URL == "db://":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": CACHE_TABLE}}
else:
    raise ImproperlyConfigured(f"CACHE_URL must be redis://host:port/db or db://, got {CACHE_URL!r}")

# --- Training jobs (docs/training-jobs.md) ---------------------------------------------------------------
# Job folders (checkpoints, the model, logs). Put it on storage all GPU workers share, so a retry that
# lands on another machine resumes from the same checkpoints.
TRAINING_DIR = Path(env_str("TRAINING_DIR", str(VAR_DIR / "training")))
# The reaper (beat, every minute) fails a running job whose worker sent no heartbeat for this long.
TRAINING_STALE_AFTER_S = env_int("TRAINING_STALE_AFTER_S", 600, minimum=60)
# A trainer still running after this long is stopped with a checkpoint. It must end before the broker's
# visibility timeout, after which Redis would hand the same job to a second worker.
_VISIBILITY = int(str(CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 48 * 3600)))
TRAINING_JOB_TIMEOUT_S = env_int("TRAINING_JOB_TIMEOUT_S", max(60, _VISIBILITY - 3600), minimum=60)
if TRAINING_JOB_TIMEOUT_S >= _VISIBILITY:
    raise ImproperlyConfigured("TRAINING_JOB_TIMEOUT_S must be below CELERY_VISIBILITY_TIMEOUT")
# The heartbeat proves the supervisor alive, not the trainer progressing: a trainer that reports no
# progress (no step, no evaluation) for this long is stopped with a checkpoint and its job failed saying
# so. A job may set its own (TrainingJob.progress_timeout_s), e.g. for a long evaluation.
TRAINING_PROGRESS_TIMEOUT_S = env_int("TRAINING_PROGRESS_TIMEOUT_S", 30 * 60, minimum=60)
# A queued job's message expires after this long; the reaper then fails the job (no GPU worker took it),
# and a retry queues it again, rather than a worker starting it days later than anyone expects.
TRAINING_QUEUE_EXPIRY_S = env_int("TRAINING_QUEUE_EXPIRY_S", 7 * 24 * 3600, minimum=60)
# Where a job's config may point (the base model, DeepSpeed and FSDP files): folders under these, on the
# GPU machine. The job folders (TRAINING_DIR, where registered models are), var/models, and the offline
# MiniLM package are always allowed; TRAINING_MODEL_ROOTS adds more (comma-separated absolute paths).
TRAINING_MODEL_ROOTS = [
    str(TRAINING_DIR),
    str(VAR_DIR / "models"),
    *env_list("TRAINING_MODEL_ROOTS", []),
]
for _root in TRAINING_MODEL_ROOTS:
    if not Path(_root).is_absolute():
        raise ImproperlyConfigured(f"TRAINING_MODEL_ROOTS must be absolute paths, got {_root!r}")
# The demo's policy: a small Llama that `manage.py seed_demo` builds here (no decoder can be downloaded),
# the default checkpoint of a PPO-Lag job that names none.
DEMO_POLICY_DIR = Path(env_str("BEAVERLAB_DEMO_POLICY_DIR", str(VAR_DIR / "models" / "demo-policy")))
# Passes over the demo's answers that warm-start it (about 4 s each on 2 CPU cores); 0: seed_demo builds none.
DEMO_POLICY_EPOCHS = env_int("BEAVERLAB_DEMO_POLICY_EPOCHS", 8, minimum=0)

# --- QA moderation (docs/moderation.md) --------------------------------------------------------------
# Pairs per POST /api/v1/moderation/ (a larger batch is a 400 naming this limit), characters per prompt or
# response (the model reads at most its max_length tokens anyway), and calls per token.
MODERATION_MAX_BATCH = env_int("MODERATION_MAX_BATCH", 64, minimum=1)
MODERATION_MAX_TEXT_CHARS = env_int("MODERATION_MAX_TEXT_CHARS", 20_000, minimum=100)
MODERATION_RATE = env_str("MODERATION_RATE", "600/min")
# Pairs per forward pass (at most: batches also split by length), and torch's threads in a process that
# serves moderation (0: torch's default).
MODERATION_BATCH_SIZE = env_int("MODERATION_BATCH_SIZE", 16, minimum=1)
MODERATION_TORCH_THREADS = env_int("MODERATION_TORCH_THREADS", 0, minimum=0)
# Serve on a CPU with the Linear layers quantized to int8 (about 2.8x the float32 throughput; the scores
# move slightly: docs/moderation.md). The API's answer says which precision scored it.
MODERATION_CPU_INT8 = env_bool("MODERATION_CPU_INT8", True)
# A scoring run whose heartbeat is older than this lost its worker and may be run again.
MODERATION_RUN_STALE_AFTER_S = env_int("MODERATION_RUN_STALE_AFTER_S", 600, minimum=60)

# --- Snapshots (docs/exports.md) ---------------------------------------------------------------------
# A queued snapshot's build message expires after this long; the reaper then fails the snapshot.
SNAPSHOT_QUEUE_EXPIRY_S = env_int("SNAPSHOT_QUEUE_EXPIRY_S", 24 * 3600, minimum=60)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# The stored agreement report follows new labels once it is this old (annotate.agreement_report
# project_needs_recompute; the beat asks every 30 s): the dashboard is at most about a minute behind.
AGREEMENT_REFRESH_S = env_int("AGREEMENT_REFRESH_S", 20, minimum=1)
CELERY_BEAT_SCHEDULE = {
    "release-expired-leases": {"task": "annotate.release_expired_leases", "schedule": 60.0},
    "recompute-due-agreement": {"task": "annotate.recompute_due_agreement", "schedule": 30.0},
    "reap-stale-training-jobs": {"task": "training.reap_stale_jobs", "schedule": 60.0},
    "reap-expired-snapshots": {"task": "annotate.reap_expired_snapshots", "schedule": 300.0},
}

"""Django settings for the authapi service: environment variables in, settings out.

Parsing only; validation of the AUTHAPI values happens in ``authapi.conf``.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from corsheaders.defaults import default_headers
from django.core.exceptions import ImproperlyConfigured

from authapi import conf, datadir
from project import accounts, mail

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("AUTHAPI_DATA_DIR") or BASE_DIR / "var")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# 0700, and every file in it 0600: it holds the secret, the database and the store.
DATA_DIR = datadir.prepare(DATA_DIR)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or datadir.secret(DATA_DIR / "secret_key")
# Earlier secrets still accepted while DJANGO_SECRET_KEY rotates (Django's own mechanism;
# tokens signed with a key derived from one of them stay valid too).
SECRET_KEY_FALLBACKS = _list("DJANGO_SECRET_KEY_FALLBACKS")
# Read by authapi's deploy check: production should set DJANGO_SECRET_KEY itself.
AUTHAPI_SECRET_KEY_GENERATED = not os.environ.get("DJANGO_SECRET_KEY")
DEBUG = _truthy(os.environ.get("DJANGO_DEBUG"))


ALLOWED_HOSTS = _list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "ninja",
    "authapi",
]

MIDDLEWARE = [
    "authapi.middleware.json_errors",
    "django.middleware.security.SecurityMiddleware",
    "authapi.middleware.static_files",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# Browser apps on other origins (django-cors-headers): none unless listed, and only on the
# API's paths. Credentials are allowed for cookie mode (AUTHAPI_COOKIES=1, which has its
# own CSRF check, authapi/cookies.py). The admin stays same-origin: no CORS headers there,
# and the app's origins are not trusted by Django's CSRF check, so a script on the app's
# pages can neither read an admin page nor post an admin form.
CORS_ALLOWED_ORIGINS = _list("DJANGO_CORS_ALLOWED_ORIGINS")
CORS_URLS_REGEX = r"^/api/"
CORS_ALLOW_CREDENTIALS = True
CORS_ALLOW_HEADERS = (*default_headers, "x-csrf-token", "dpop")
CORS_EXPOSE_HEADERS = ["Retry-After", "WWW-Authenticate", "DPoP-Nonce"]
CSRF_TRUSTED_ORIGINS = _list("DJANGO_CSRF_TRUSTED_ORIGINS")

# DJANGO_HTTPS=1: served over HTTPS behind a TLS proxy that sets X-Forwarded-Proto.
HTTPS = _truthy(os.environ.get("DJANGO_HTTPS"))
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^health$"]  # the proxy's and orchestrator's plain-http probe
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS") or 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
X_FRAME_OPTIONS = "DENY"

# Django's own login (the admin) shares the API's throttle of login attempts.
AUTHENTICATION_BACKENDS = ["authapi.backends.ThrottledModelBackend"]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"

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

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'db.sqlite3'}",
        # Requests' sync work runs on long-lived threads (authapi.asgi.threads), whose
        # connections are kept this long and checked before reuse.
        conn_max_age=int(os.environ.get("DJANGO_CONN_MAX_AGE") or 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite gives its -wal and -shm files the database file's mode: make that 0600 first.
    datadir.touch_private(Path(DATABASES["default"]["NAME"]))
    # WAL lets the async ORM's thread read while another worker writes.
    DATABASES["default"].setdefault("OPTIONS", {})["init_command"] = "PRAGMA journal_mode=WAL;"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
# WhiteNoise serves straight from the apps' static folders: no collectstatic step.
WHITENOISE_USE_FINDERS = True
APPEND_SLASH = False

# Bodies larger than this are refused with 413 before parsing (API.md: 16 KiB).
DATA_UPLOAD_MAX_MEMORY_SIZE = 16 * 1024

REDIS_URL = os.environ.get("REDIS_URL") or None

# Every known AUTHAPI_* variable, as text; authapi.conf validates and converts them
# (a misspelt one is left out here, and `manage.py check` warns authapi.W003).
AUTHAPI = conf.from_environ(os.environ)
AUTHAPI.pop("DATA_DIR", None)

# AUTHAPI_ACCOUNTS=on: django-allauth's headless app API at /_allauth/app/v1/ (project/urls.py).
# Run `manage.py migrate` with it on too: allauth's tables are made then.
ACCOUNTS = conf.parse("ACCOUNTS", AUTHAPI.get("ACCOUNTS"))
if ACCOUNTS:
    if not accounts.AVAILABLE:
        raise ImproperlyConfigured(
            'AUTHAPI_ACCOUNTS=on needs django-allauth: pip install "django-authapi[accounts]"'
        )
    INSTALLED_APPS += accounts.APPS
    MIDDLEWARE.insert(
        MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1,
        accounts.MIDDLEWARE,
    )
    AUTHENTICATION_BACKENDS = accounts.BACKENDS
    globals().update(
        accounts.settings(conf.parse("FRONTEND_URL", AUTHAPI.get("FRONTEND_URL")), https=HTTPS)
    )

# EMAIL_URL (SMTP) or EMAIL_FILE_PATH (a folder), else the console; only the accounts send
# mail, so with them off and neither set no backend is named (project/mail.py).
globals().update(mail.settings(os.environ, sends=ACCOUNTS))

# AUTHAPI_LOG_FORMAT=text|json: one handler for the app, Django and uvicorn (authapi/logs.py).
from authapi.logs import logging_config  # noqa: E402

LOGGING = logging_config(os.environ.get("AUTHAPI_LOG_FORMAT"), os.environ.get("AUTHAPI_LOG_LEVEL"))

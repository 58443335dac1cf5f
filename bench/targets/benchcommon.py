"""Settings every peer target shares: the database, key, hasher and logging run.py chose.

Only Django is imported, so this works in every target's virtualenv. Our own target reads
the same values through the environment variables ``project.settings`` documents.
"""

from __future__ import annotations

import os
from datetime import timedelta

SECRET_KEY = os.environ["BENCH_SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
PASSWORD_HASHERS = ["benchhashers.BenchPBKDF2PasswordHasher"]
# The same SQLite set-up as ours (project/settings.py): WAL, no persistent connections.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BENCH_DB", ":memory:"),
        "CONN_MAX_AGE": 0,
        "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;"},
    }
}
# What `django-admin startproject` writes: the stack a peer's user runs.
STARTPROJECT_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# Ours: 900 s access, 7 days refresh (authapi defaults); the peers get the same.
ACCESS_LIFETIME = timedelta(seconds=900)
REFRESH_LIFETIME = timedelta(days=7)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}

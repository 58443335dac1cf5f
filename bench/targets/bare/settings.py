"""The ceiling: Django and django-ninja with no middleware, no auth, no database."""

from benchcommon import *  # noqa: F403

INSTALLED_APPS = ["ninja"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "bare.urls"
DATABASES: dict[str, dict[str, str]] = {}

"""tests.settings plus Django REST framework and djangorestframework-simplejwt.

The live server's ``DJANGO_SETTINGS_MODULE`` in tests/test_drf.py; in-process, ``installed()``
applies the same names with ``override_settings``. simplejwt runs as its users run it:
rotation on, its blacklist app installed, so its answers are the ones to match.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib.util import find_spec

from tests.settings import *  # noqa: F403

SIMPLEJWT = find_spec("rest_framework_simplejwt") is not None
INSTALLED_APPS = [
    *INSTALLED_APPS,  # noqa: F405
    "rest_framework",
    *(["rest_framework_simplejwt.token_blacklist"] if SIMPLEJWT else []),
]
ROOT_URLCONF = "tests.drf_urls"
# What a project migrating from simplejwt changes: this one class name.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["authapi.drf.JWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}
SIMPLE_JWT = {"ROTATE_REFRESH_TOKENS": True, "BLACKLIST_AFTER_ROTATION": True}
_NAMES = ("ROOT_URLCONF", "REST_FRAMEWORK", "SIMPLE_JWT")  # and INSTALLED_APPS


@contextmanager
def installed() -> Iterator[None]:
    """Run with these settings in this process, simplejwt's blacklist tables migrated."""
    from django.conf import settings
    from django.core.management import call_command
    from django.test import override_settings

    values = {name: globals()[name] for name in _NAMES}
    with override_settings(**values):
        # override_settings loads the new apps before it swaps the settings in, and
        # simplejwt's models decide at import whether they are abstract by reading
        # settings.INSTALLED_APPS: so the list goes in first, then the apps load.
        settings.INSTALLED_APPS = INSTALLED_APPS
        with override_settings(INSTALLED_APPS=INSTALLED_APPS):
            if SIMPLEJWT:
                call_command("migrate", "token_blacklist", verbosity=0)
            try:
                yield
            finally:
                _unregister_admin()


def _unregister_admin() -> None:
    """The admin registry outlives the apps: forget the blacklist app's models in it."""
    from django.contrib import admin

    for model in list(admin.site._registry):
        if model._meta.app_label == "token_blacklist":
            admin.site.unregister(model)

"""``"authapi.resource"`` in ``INSTALLED_APPS``: ``AUTHAPI_RESOURCE`` is checked once, at
start. ``manage.py check`` (and every command that runs checks, ``runserver`` too) reports
each fault naming its key; any other process (uvicorn, gunicorn, daphne importing the
ASGI/WSGI application) refuses to start, since checks do not run there. Never a 500 per
request for configuration."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

_COMMANDS = {"manage.py", "django-admin", "django-admin.py"}


class ResourceConfig(AppConfig):
    name = "authapi.resource"
    label = "authapi_resource"
    verbose_name = "authapi resource kit"

    def ready(self) -> None:
        checks.register(settings_check, "authapi")
        if not _management_command():
            faults = _faults()
            if faults:
                raise ImproperlyConfigured("; ".join(faults))


def settings_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    return [checks.Error(fault, id="authapi.resource.E001") for fault in _faults()]


def _faults() -> list[str]:
    from django.conf import settings

    from authapi.resource import settings as resource_settings

    return resource_settings.problems(getattr(settings, "AUTHAPI_RESOURCE", None))


def _management_command() -> bool:
    """Run by ``manage.py`` / ``django-admin`` / ``python -m django``: checks report."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    return script.name in _COMMANDS or (
        script.name == "__main__.py" and script.parent.name == "django"
    )

"""Refuse to serve with a broken configuration: checks do not run under uvicorn."""

from __future__ import annotations

import logging

from django.core.exceptions import ImproperlyConfigured

from authapi import checks

logger = logging.getLogger("authapi")


def validate() -> None:
    """Raise ImproperlyConfigured (stopping the server) on any authapi configuration error;
    log the warnings (a misspelt ``AUTHAPI_*`` variable) and serve."""
    errors = checks.settings_check()
    if errors:
        raise ImproperlyConfigured("; ".join(f"{e.id}: {e.msg}" for e in errors))
    for warning in checks.environment_check():
        logger.warning("%s: %s", warning.id, warning.msg)

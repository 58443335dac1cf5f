"""Refuse to serve with a broken configuration: checks do not run under uvicorn."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from authapi import checks


def validate() -> None:
    """Raise ImproperlyConfigured (stopping the server) on any authapi configuration error."""
    errors = checks.settings_check()
    if errors:
        raise ImproperlyConfigured("; ".join(f"{e.id}: {e.msg}" for e in errors))

"""Outgoing mail from the environment: ``EMAIL_URL`` (SMTP), else ``EMAIL_FILE_PATH``
(Django's file backend: one file per connection in that folder), else the console.

Only the accounts (``AUTHAPI_ACCOUNTS=on``) send mail. With them off and nothing set, no
backend is named: Django's default stands, and Django 6.1's deploy check ``mail.E001`` (a
development backend in production) has nothing to refuse. With them on, the console
default is refused by that check, as it should be: a deployment's users need their mail."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import django
from django.core.exceptions import ImproperlyConfigured

CONSOLE = "django.core.mail.backends.console.EmailBackend"
_SCHEMES = {"smtp": (False, False), "smtp+tls": (True, False), "smtps": (False, True),
            "smtp+ssl": (False, True)}  # fmt: skip


def settings(environ: Mapping[str, str], *, sends: bool = True) -> dict[str, Any]:
    """Django's mail settings; from Django 6.1 as ``MAILERS`` (its ``EMAIL_*`` settings
    are deprecated there, and a deprecation warning is an error in our tests). ``sends``:
    something mails users; without it and without a configured backend, none is named."""
    legacy = _legacy(environ)
    if not sends and legacy["EMAIL_BACKEND"] == CONSOLE:
        del legacy["EMAIL_BACKEND"]
        return legacy
    if django.VERSION < (6, 1):
        return legacy
    return {key: legacy[key] for key in ("DEFAULT_FROM_EMAIL", "SERVER_EMAIL")} | {
        "MAILERS": {"default": _mailer(legacy)}
    }


# EMAIL_* setting -> the backend's keyword argument (MAILERS' OPTIONS).
_OPTIONS = {"EMAIL_FILE_PATH": "file_path", "EMAIL_HOST": "host", "EMAIL_PORT": "port",
            "EMAIL_HOST_USER": "username", "EMAIL_HOST_PASSWORD": "password",
            "EMAIL_USE_TLS": "use_tls", "EMAIL_USE_SSL": "use_ssl",
            "EMAIL_TIMEOUT": "timeout"}  # fmt: skip


def _mailer(legacy: dict[str, Any]) -> dict[str, Any]:
    options = {option: legacy[key] for key, option in _OPTIONS.items() if key in legacy}
    return {"BACKEND": legacy["EMAIL_BACKEND"], "OPTIONS": options}


def _legacy(environ: Mapping[str, str]) -> dict[str, Any]:
    url = (environ.get("EMAIL_URL") or "").strip()
    folder = (environ.get("EMAIL_FILE_PATH") or "").strip()
    sender = environ.get("DJANGO_DEFAULT_FROM_EMAIL") or "authapi <noreply@localhost>"
    common = {"DEFAULT_FROM_EMAIL": sender, "SERVER_EMAIL": sender}
    if url:
        return {**common, **_smtp(url)}
    if folder:
        return {
            **common,
            "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "EMAIL_FILE_PATH": folder,
        }
    return {**common, "EMAIL_BACKEND": CONSOLE}


def _smtp(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES or not parts.hostname:
        # The URL may hold a password: name the variable and the forms, never the value.
        raise ImproperlyConfigured(
            "EMAIL_URL is not an SMTP URL: expected smtp://, smtp+tls:// or smtps://"
            "[user:password@]host[:port]."
        )
    tls, ssl = _SCHEMES[scheme]
    try:
        port = parts.port or (465 if ssl else 587 if tls else 25)
    except ValueError:
        raise ImproperlyConfigured("EMAIL_URL has a port that is not a number.") from None
    timeout = parse_qs(parts.query).get("timeout", ["10"])[0]
    if not timeout.isdigit():
        raise ImproperlyConfigured("EMAIL_URL's timeout is not a whole number of seconds.")
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": parts.hostname,
        "EMAIL_PORT": port,
        "EMAIL_HOST_USER": unquote(parts.username or ""),
        "EMAIL_HOST_PASSWORD": unquote(parts.password or ""),
        "EMAIL_USE_TLS": tls,
        "EMAIL_USE_SSL": ssl,
        "EMAIL_TIMEOUT": int(timeout),
    }

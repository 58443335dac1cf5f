"""System checks over the configuration (``manage.py check [--deploy]``).

The same faults stop uvicorn at start (``startup.validate``): checks do not run there.

* ``authapi.E001`` a setting's value; ``E002`` the keys; ``E003`` custom claims;
  ``E004`` an ``AUTHAPI`` key that names no setting (with the closest known one).
* ``authapi.W003`` an ``AUTHAPI_*`` environment variable that names no setting.
* ``--deploy`` only: ``W001`` a generated secret signs tokens; ``W002`` Django's own
  logins (the admin) are not throttled; ``W004`` served over HTTPS without
  ``AUTHAPI_ISSUER`` nor a single ``ALLOWED_HOSTS`` name, so the metadata's URLs follow
  each request's Host.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from authapi import conf, keys, origin


def settings_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    raw = conf.raw()
    unknown: list[checks.CheckMessage] = [
        checks.Error(message, id="authapi.E004") for message in conf.unknown_keys(raw)
    ]
    try:
        cfg = conf.from_mapping({k: v for k, v in raw.items() if k in conf.KNOWN})
    except ImproperlyConfigured as exc:
        return [*unknown, checks.Error(str(exc), id="authapi.E001")]
    if unknown:
        return unknown
    try:
        keys.build(cfg, settings.SECRET_KEY, tuple(settings.SECRET_KEY_FALLBACKS or ()))
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="authapi.E002")]
    if cfg.custom_claims:
        from django.utils.module_loading import import_string

        try:
            import_string(cfg.custom_claims)
        except ImportError:
            return [
                checks.Error(
                    f"AUTHAPI_CUSTOM_CLAIMS: cannot import {cfg.custom_claims!r}.",
                    id="authapi.E003",
                )
            ]
    return []


def environment_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A misspelt AUTHAPI_* variable would leave its setting at the default, silently."""
    return [
        checks.Warning(message, id="authapi.W003")
        for message in conf.unknown_environment(os.environ)
    ]


def deploy_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    cfg = conf.get()
    if (
        getattr(settings, "AUTHAPI_SECRET_KEY_GENERATED", False)
        and cfg.is_hmac
        and not cfg.signing_key
    ):
        return [
            checks.Warning(
                "Tokens are signed with a key derived from a generated local secret.",
                hint="Set DJANGO_SECRET_KEY (or AUTHAPI_SIGNING_KEY) in production.",
                id="authapi.W001",
            )
        ]
    return []


def issuer_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Over HTTPS the metadata should name one origin, not whichever Host a request sent."""
    if not settings.SECURE_SSL_REDIRECT or conf.get().issuer or origin.pinned_host():
        return []
    return [
        checks.Warning(
            "AUTHAPI_ISSUER is unset: the metadata (/.well-known/oauth-authorization-server) "
            "builds its URLs from each request's Host header.",
            hint="Set AUTHAPI_ISSUER to the service's public URL (https://auth.example.com), "
            "or name the one host in ALLOWED_HOSTS.",
            id="authapi.W004",
        )
    ]


def backend_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Django's own login doors (the admin) bypass the throttle without our backend."""
    from django.utils.module_loading import import_string

    from authapi.backends import ThrottledModelBackend

    for path in settings.AUTHENTICATION_BACKENDS:
        try:
            backend = import_string(path)
        except ImportError:
            continue  # Django's own checks and the first login report it
        if isinstance(backend, type) and issubclass(backend, ThrottledModelBackend):
            return []
    return [
        checks.Warning(
            "Logins through Django's authenticate() (the admin's login page) are not "
            "throttled: no AUTHENTICATION_BACKENDS entry is authapi's throttled backend.",
            hint='Put "authapi.backends.ThrottledModelBackend" in AUTHENTICATION_BACKENDS '
            "in place of django.contrib.auth.backends.ModelBackend.",
            id="authapi.W002",
        )
    ]


def register() -> None:
    checks.register(settings_check, "authapi")
    checks.register(environment_check, "authapi")
    # Advice for production: a stock project with the three lines of README is "no issues".
    checks.register(backend_check, "authapi", deploy=True)
    checks.register(deploy_check, "authapi", deploy=True)
    checks.register(issuer_check, "authapi", deploy=True)

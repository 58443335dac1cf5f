"""``settings.AUTHAPI_RESOURCE``: read once, validated, frozen; errors name the key."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from authapi import conf

KNOWN = frozenset(
    {
        "JWKS_URL",
        "SIGNING_KEY",
        "ALGORITHM",
        "ISSUER",
        "AUDIENCE",
        "LEEWAY",
        "REDIS_URL",
        "INTROSPECTION_URL",
        "CLIENT_ID",
        "CLIENT_SECRET",
        "INTROSPECTION_CACHE_SECONDS",
        "JWKS_MIN_REFETCH_SECONDS",
        "JWKS_MAX_AGE",
        "TIMEOUT",
    }
)


@dataclass(frozen=True)
class ResourceSettings:
    jwks_url: str | None = None
    signing_key: str | None = field(default=None, repr=False)  # HMAC deployments
    algorithm: str = "HS256"  # of signing_key; the JWKS names its own
    issuer: str | None = None
    audience: tuple[str, ...] = ()
    leeway: int = 0
    redis_url: str | None = field(default=None, repr=False)
    introspection_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    introspection_cache: int = 0  # seconds an "active" answer is reused; 0: ask each time
    jwks_min_refetch: int = 30  # an unknown kid refetches the JWKS at most this often
    jwks_max_age: int = 300  # when the JWKS answer has no Cache-Control max-age
    timeout: float = 2.0


def _text(raw: dict[str, Any], name: str) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ImproperlyConfigured(f"AUTHAPI_RESOURCE['{name}'] must be text.")
    return value.strip() or None


def _number(raw: dict[str, Any], name: str, default: int) -> int:
    value = raw.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"AUTHAPI_RESOURCE['{name}'] must be a whole number.") from None
    if number < 0 or isinstance(value, bool):
        raise ImproperlyConfigured(f"AUTHAPI_RESOURCE['{name}'] must be 0 or more.")
    return number


def problems(raw: Any) -> list[str]:
    """Every fault of ``AUTHAPI_RESOURCE``, each naming its key (``manage.py check``)."""
    if not isinstance(raw, dict):
        return ["Set AUTHAPI_RESOURCE (a dict) to use authapi.resource."]
    found = [_unknown(name) for name in sorted(set(raw) - KNOWN, key=str)]
    given = {name for name in KNOWN & set(raw) if raw[name] not in (None, "")}
    keyed = given & {"JWKS_URL", "SIGNING_KEY"}
    if len(keyed) == 2:
        found.append(
            "AUTHAPI_RESOURCE sets both JWKS_URL and SIGNING_KEY: name one way to check a "
            "token's signature (JWKS_URL for asymmetric keys, SIGNING_KEY for HMAC)."
        )
    if "REDIS_URL" in given and "INTROSPECTION_URL" in given:
        found.append(
            "AUTHAPI_RESOURCE sets both REDIS_URL and INTROSPECTION_URL: name one way to "
            "check revocation (the auth service's store, or its introspection)."
        )
    elif "REDIS_URL" in given and not keyed:
        found.append(
            "AUTHAPI_RESOURCE['REDIS_URL'] checks revocation only: add JWKS_URL or "
            "SIGNING_KEY to verify tokens, or use INTROSPECTION_URL instead."
        )
    elif "REDIS_URL" not in given and "INTROSPECTION_URL" not in given:
        found.append(
            "AUTHAPI_RESOURCE names no way to check a token: set INTROSPECTION_URL (with "
            "CLIENT_ID and CLIENT_SECRET), or JWKS_URL / SIGNING_KEY with REDIS_URL."
        )
    client = given & {"CLIENT_ID", "CLIENT_SECRET"}
    if "INTROSPECTION_URL" in given:
        for name in sorted({"CLIENT_ID", "CLIENT_SECRET"} - client):
            found.append(f"AUTHAPI_RESOURCE['INTROSPECTION_URL'] needs {name}.")
    elif client:
        names = " and ".join(sorted(client))
        found.append(f"AUTHAPI_RESOURCE sets {names} without INTROSPECTION_URL.")
    if not found:
        try:
            from_mapping(raw)
        except ImproperlyConfigured as exc:
            found.append(str(exc))
    return found


def _unknown(name: Any) -> str:
    close = difflib.get_close_matches(str(name), KNOWN, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"AUTHAPI_RESOURCE has an unknown key {name!r}{hint}; known: {', '.join(sorted(KNOWN))}."


def from_mapping(raw: dict[str, Any]) -> ResourceSettings:
    unknown = sorted(set(raw) - KNOWN, key=str)
    if unknown:
        raise ImproperlyConfigured(_unknown(unknown[0]))
    jwks_url, signing_key = _text(raw, "JWKS_URL"), _text(raw, "SIGNING_KEY")
    redis_url = _text(raw, "REDIS_URL")
    introspection = _text(raw, "INTROSPECTION_URL")
    client_id, secret = _text(raw, "CLIENT_ID"), _text(raw, "CLIENT_SECRET")
    if jwks_url and signing_key:
        raise ImproperlyConfigured("AUTHAPI_RESOURCE sets both JWKS_URL and SIGNING_KEY.")
    if bool(redis_url) == bool(introspection):
        raise ImproperlyConfigured(
            "AUTHAPI_RESOURCE needs REDIS_URL (the auth service's store) or "
            "INTROSPECTION_URL (with CLIENT_ID and CLIENT_SECRET), exactly one."
        )
    if redis_url and not (jwks_url or signing_key):
        raise ImproperlyConfigured(
            "AUTHAPI_RESOURCE['REDIS_URL'] needs JWKS_URL or SIGNING_KEY to verify tokens."
        )
    if introspection and not (client_id and secret):
        raise ImproperlyConfigured(
            "AUTHAPI_RESOURCE['INTROSPECTION_URL'] needs CLIENT_ID and CLIENT_SECRET."
        )
    algorithm = _text(raw, "ALGORITHM") or "HS256"
    if signing_key and algorithm not in conf.HMAC_ALGORITHMS:
        raise ImproperlyConfigured(
            f"AUTHAPI_RESOURCE['ALGORITHM'] is {algorithm!r}; SIGNING_KEY is for "
            f"{', '.join(conf.HMAC_ALGORITHMS)}. Use JWKS_URL for asymmetric keys."
        )
    audience = raw.get("AUDIENCE") or ()
    audiences = (audience,) if isinstance(audience, str) else tuple(audience)
    return ResourceSettings(
        jwks_url=jwks_url,
        signing_key=signing_key,
        algorithm=algorithm,
        issuer=_text(raw, "ISSUER"),
        audience=tuple(a.strip() for a in audiences if str(a).strip()),
        leeway=_number(raw, "LEEWAY", 0),
        redis_url=redis_url,
        introspection_url=introspection,
        client_id=client_id,
        client_secret=secret,
        introspection_cache=_number(raw, "INTROSPECTION_CACHE_SECONDS", 0),
        jwks_min_refetch=_number(raw, "JWKS_MIN_REFETCH_SECONDS", 30),
        jwks_max_age=_number(raw, "JWKS_MAX_AGE", 300),
        timeout=float(_number(raw, "TIMEOUT", 2)) or 2.0,
    )


@cache
def get() -> ResourceSettings:
    raw = getattr(settings, "AUTHAPI_RESOURCE", None)
    if not isinstance(raw, dict):
        raise ImproperlyConfigured("Set AUTHAPI_RESOURCE (a dict) to use authapi.resource.")
    return from_mapping(raw)


@receiver(setting_changed)
def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "AUTHAPI_RESOURCE":
        get.cache_clear()
        from authapi.resource import checker

        checker.reset()

"""AUTHAPI_* settings: read once from ``settings.AUTHAPI``, validated, frozen.

``settings.AUTHAPI`` maps names without the ``AUTHAPI_`` prefix to values (text from the
environment, or Python values from a settings file or ``override_settings``). Errors name
the variable and the fault, never a secret's value.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
ASYMMETRIC_ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")
ALGORITHMS = HMAC_ALGORITHMS + ASYMMETRIC_ALGORITHMS

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$")
_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class AuthSettings:
    """The validated configuration; build one with :func:`from_mapping`."""

    algorithm: str = "HS256"
    signing_key: str | None = field(default=None, repr=False)
    previous_keys: tuple[str, ...] = field(default=(), repr=False)
    access_lifetime: int = 900
    refresh_lifetime: int = 604800
    issuer: str | None = None
    audience: tuple[str, ...] = ()
    leeway: int = 0
    login_rate: tuple[int, int] | None = (5, 60)
    login_rate_per_ip: tuple[int, int] | None = (60, 60)
    trusted_proxies: tuple[Network, ...] = ()
    session_max_age: int = 2592000
    max_sessions: int = 100
    reuse_interval: int = 0
    custom_claims: str | None = None
    jwks_max_age: int = 300
    cookies: bool = False
    cookie_secure: bool | None = None  # None: Secure except for plain http on loopback
    cookie_domain: str | None = None
    metrics_token: str | None = field(default=None, repr=False)  # None: /metrics is a 404
    # (client_id, secret) pairs that may call introspection; empty: it answers 404
    resource_clients: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @property
    def is_hmac(self) -> bool:
        return self.algorithm in HMAC_ALGORITHMS


def _text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ImproperlyConfigured(f"AUTHAPI_{name} must be text, not {type(value).__name__}.")
    value = value.strip()
    return value or None


def _int(name: str, value: Any, default: int, minimum: int) -> int:
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, bool):
        raise ImproperlyConfigured(f"AUTHAPI_{name} must be a whole number of seconds.")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(
            f"AUTHAPI_{name} has value {value!r}. Not a valid whole number."
        ) from None
    if number < minimum:
        raise ImproperlyConfigured(f"AUTHAPI_{name} must be at least {minimum}, not {number}.")
    return number


def _bool(name: str, value: Any, default: bool) -> bool:
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"AUTHAPI_{name} has value {value!r}. Expected 1 or 0.")


def _optional_bool(name: str, value: Any) -> bool | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "auto"}):
        return None
    return _bool(name, value, False)


def _list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    else:
        items = list(value)
    return tuple(str(item).strip() for item in items if str(item).strip())


def _rate(name: str, value: Any, default: tuple[int, int]) -> tuple[int, int] | None:
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return None if value == 0 else (value, 60)
    text = str(value).strip()
    if text in {"", "0", "off", "none"}:
        return None
    match = _RATE.match(text)
    if not match:
        raise ImproperlyConfigured(
            f"AUTHAPI_{name} has value {text!r}. Expected 'N/period' such as '5/min', or 0."
        )
    count, multiplier, unit = int(match[1]), int(match[2] or 1), match[3][0]
    if count == 0:
        return None
    return (count, multiplier * _PERIODS[unit])


def _networks(value: Any) -> tuple[Network, ...]:
    networks = []
    for item in _list(value):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"AUTHAPI_TRUSTED_PROXIES has {item!r}, which is not an IP address or network."
            ) from None
    return tuple(networks)


def _clients(value: Any) -> tuple[tuple[str, str], ...]:
    """``AUTHAPI_RESOURCE_CLIENTS``: ``id:secret`` items, comma separated (neither may hold
    a comma; the secret may hold colons). Errors name the item's place, never its secret."""
    clients = []
    for i, item in enumerate(_list(value)):
        client_id, colon, secret = item.partition(":")
        if not colon or not client_id.strip() or not secret.strip():
            raise ImproperlyConfigured(
                f"AUTHAPI_RESOURCE_CLIENTS item {i + 1} is not 'client_id:secret'."
            )
        clients.append((client_id.strip(), secret.strip()))
    return tuple(clients)


def from_mapping(raw: Mapping[str, Any]) -> AuthSettings:
    """Validate a mapping of AUTHAPI names (no prefix) to values."""
    algorithm = _text("ALGORITHM", raw.get("ALGORITHM")) or "HS256"
    if algorithm not in ALGORITHMS:
        raise ImproperlyConfigured(
            f"AUTHAPI_ALGORITHM has value {algorithm!r}. Choose one of {', '.join(ALGORITHMS)}."
        )
    access = _int("ACCESS_TOKEN_LIFETIME", raw.get("ACCESS_TOKEN_LIFETIME"), 900, 1)
    refresh = _int("REFRESH_TOKEN_LIFETIME", raw.get("REFRESH_TOKEN_LIFETIME"), 604800, 1)
    return AuthSettings(
        algorithm=algorithm,
        signing_key=_text("SIGNING_KEY", raw.get("SIGNING_KEY")),
        previous_keys=_list(raw.get("PREVIOUS_KEYS")),
        access_lifetime=access,
        refresh_lifetime=refresh,
        issuer=_text("ISSUER", raw.get("ISSUER")),
        audience=_list(raw.get("AUDIENCE")),
        leeway=_int("LEEWAY", raw.get("LEEWAY"), 0, 0),
        login_rate=_rate("LOGIN_RATE", raw.get("LOGIN_RATE"), (5, 60)),
        login_rate_per_ip=_rate("LOGIN_RATE_PER_IP", raw.get("LOGIN_RATE_PER_IP"), (60, 60)),
        trusted_proxies=_networks(raw.get("TRUSTED_PROXIES")),
        session_max_age=_int("SESSION_MAX_AGE", raw.get("SESSION_MAX_AGE"), 2592000, 1),
        max_sessions=_int("MAX_SESSIONS_PER_USER", raw.get("MAX_SESSIONS_PER_USER"), 100, 1),
        reuse_interval=_int("REFRESH_REUSE_INTERVAL", raw.get("REFRESH_REUSE_INTERVAL"), 0, 0),
        custom_claims=_text("CUSTOM_CLAIMS", raw.get("CUSTOM_CLAIMS")),
        jwks_max_age=_int("JWKS_MAX_AGE", raw.get("JWKS_MAX_AGE"), 300, 0),
        cookies=_bool("COOKIES", raw.get("COOKIES"), False),
        cookie_secure=_optional_bool("COOKIE_SECURE", raw.get("COOKIE_SECURE")),
        cookie_domain=_text("COOKIE_DOMAIN", raw.get("COOKIE_DOMAIN")),
        metrics_token=_text("METRICS_TOKEN", raw.get("METRICS_TOKEN")),
        resource_clients=_clients(raw.get("RESOURCE_CLIENTS")),
    )


@cache
def get() -> AuthSettings:
    """The settings in force, validated once per configuration."""
    return from_mapping(getattr(settings, "AUTHAPI", None) or {})


_reset_hooks: list[Callable[[], None]] = []


def on_reset(hook: Callable[[], None]) -> Callable[[], None]:
    """Register a cache to clear when the settings change (tests' override_settings)."""
    _reset_hooks.append(hook)
    return hook


@receiver(setting_changed)
def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting in {"AUTHAPI", "SECRET_KEY", "SECRET_KEY_FALLBACKS"}:
        get.cache_clear()
        for hook in _reset_hooks:
            hook()


def redis_url() -> str | None:
    """The store's URL: ``AUTHAPI["REDIS_URL"]``, else ``settings.REDIS_URL``; None means
    the embedded server."""
    raw = getattr(settings, "AUTHAPI", None) or {}
    value = raw.get("REDIS_URL") or getattr(settings, "REDIS_URL", None)
    return str(value) if value else None


def data_dir() -> Path:
    """The data folder: ``AUTHAPI["DATA_DIR"]``, else ``settings.DATA_DIR``, else ``var/``
    beside the project (``BASE_DIR``) or the working directory."""
    raw = getattr(settings, "AUTHAPI", None) or {}
    value = raw.get("DATA_DIR") or getattr(settings, "DATA_DIR", None)
    if value:
        return Path(value)
    base = getattr(settings, "BASE_DIR", None)
    return Path(base or Path.cwd()) / "var"

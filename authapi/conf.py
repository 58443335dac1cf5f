"""AUTHAPI_* settings: read once from ``settings.AUTHAPI``, validated, frozen.

``settings.AUTHAPI`` maps names without the ``AUTHAPI_`` prefix to values (text from the
environment, or Python values from a settings file or ``override_settings``). Errors name
the variable and the fault, never a secret's value.

Every setting is one field of :class:`AuthSettings`, declared with :func:`setting` (its
name and its parser): that table is the list of known names, so a misspelt key is an
error naming the closest known one. Adding a setting is adding one field.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
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
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
REDIS_SCHEMES = (
    "redis",
    "rediss",
    "unix",
    "redis+cluster",
    "rediss+cluster",
    "redis+sentinel",
    "rediss+sentinel",
)
PREFIX = "AUTHAPI_"
# Variables of the test harness (tests/conftest.py), not settings of the app.
ENVIRONMENT_ONLY = frozenset({"TEST_DATABASE"})

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$")
_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Parser = Callable[[str, Any, Any], Any]  # (name, raw value or None, default) -> value


def _text(name: str, value: Any, default: str | None = None) -> str | None:
    if value is None:
        return default
    if not isinstance(value, str):
        raise ImproperlyConfigured(f"AUTHAPI_{name} must be text, not {type(value).__name__}.")
    return value.strip() or default


def _whole(name: str, value: Any, default: int, minimum: int, unit: str) -> int:
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if unit and isinstance(value, timedelta):  # simplejwt's SIMPLE_JWT spelling
        value = value.total_seconds()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool | float):
        raise ImproperlyConfigured(f"AUTHAPI_{name} must be a whole number{unit}.")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(
            f"AUTHAPI_{name} has value {value!r}. Not a valid whole number{unit}."
        ) from None
    if number < minimum:
        raise ImproperlyConfigured(f"AUTHAPI_{name} must be at least {minimum}, not {number}.")
    return number


def seconds(minimum: int) -> Parser:
    """A parser of a whole number of seconds, at least ``minimum``."""
    return lambda name, value, default: _whole(name, value, default, minimum, " of seconds")


def count(minimum: int) -> Parser:
    """A parser of a count (sessions, attempts...), at least ``minimum``."""
    return lambda name, value, default: _whole(name, value, default, minimum, "")


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


def _optional_bool(name: str, value: Any, default: Any = None) -> bool | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "auto"}):
        return None
    return _bool(name, value, False)


def _items(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    else:
        items = list(value)
    return tuple(str(item).strip() for item in items if str(item).strip())


def _list(name: str, value: Any, default: Any = ()) -> tuple[str, ...]:
    return _items(value)


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
    number, multiplier, unit = int(match[1]), int(match[2] or 1), match[3][0]
    if number == 0:
        return None
    return (number, multiplier * _PERIODS[unit])


def _prefix(name: str, value: Any, default: int) -> int:
    prefix = _whole(name, value, default, 1, "")
    if prefix > 128:
        raise ImproperlyConfigured(f"AUTHAPI_{name} must be at most 128, not {prefix}.")
    return prefix


def _networks(name: str, value: Any, default: Any = ()) -> tuple[Network, ...]:
    networks = []
    for item in _items(value):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"AUTHAPI_{name} has {item!r}, which is not an IP address or network."
            ) from None
    return tuple(networks)


def choice(options: tuple[str, ...], *, case: Callable[[str], str] = str) -> Parser:
    """A parser of one of ``options`` (compared after ``case``, e.g. ``str.upper``)."""

    def parse(name: str, value: Any, default: str) -> str:
        text = _text(name, value)
        if text is None:
            return default
        if case(text) not in {case(option) for option in options}:
            raise ImproperlyConfigured(
                f"AUTHAPI_{name} has value {case(text)!r}. Choose one of {', '.join(options)}."
            )
        return next(option for option in options if case(option) == case(text))

    return parse


def _redis_url(name: str, value: Any, default: Any = None) -> str | None:
    url = _text(name, value)
    if url is None:
        return None
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in REDIS_SCHEMES or not rest:
        # The value may hold a password: name the variable and the schemes, not the value.
        raise ImproperlyConfigured(
            f"{name} is not a store URL: expected {', '.join(s + '://' for s in REDIS_SCHEMES)}."
        )
    return url


def _url(name: str, value: Any, default: str) -> str:
    """An http(s) origin or base URL, kept without a trailing slash."""
    text = _text(name, value)
    if text is None:
        return default
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in {"http", "https"} or not rest.strip("/"):
        raise ImproperlyConfigured(
            f"AUTHAPI_{name} has value {text!r}. Expected an http:// or https:// URL."
        )
    return text.rstrip("/")


def _path(name: str, value: Any, default: Any = None) -> Path | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str | Path):
        raise ImproperlyConfigured(
            f"AUTHAPI_{name} must be a path (text), not {type(value).__name__}."
        )
    return Path(value)


def _clients(name: str, value: Any, default: Any = ()) -> tuple[tuple[str, str], ...]:
    """``AUTHAPI_RESOURCE_CLIENTS``: ``id:secret`` items, comma separated (neither may hold
    a comma; the secret may hold colons). Errors name the item's place, never its secret."""
    clients = []
    for i, item in enumerate(_list(name, value, ())):
        client_id, colon, secret = item.partition(":")
        if not colon or not client_id.strip() or not secret.strip():
            raise ImproperlyConfigured(f"AUTHAPI_{name} item {i + 1} is not 'client_id:secret'.")
        clients.append((client_id.strip(), secret.strip()))
    return tuple(clients)


def setting(name: str, parse: Parser, default: Any = None, *, secret: bool = False) -> Any:
    """One known setting: ``AUTHAPI[name]`` (``AUTHAPI_<name>`` in the environment)."""
    return field(default=default, repr=not secret, metadata={"name": name, "parse": parse})


@dataclass(frozen=True)
class AuthSettings:
    """The validated configuration; build one with :func:`from_mapping`."""

    algorithm: str = setting("ALGORITHM", choice(ALGORITHMS), "HS256")
    signing_key: str | None = setting("SIGNING_KEY", _text, secret=True)
    previous_keys: tuple[str, ...] = setting("PREVIOUS_KEYS", _list, (), secret=True)
    access_lifetime: int = setting("ACCESS_TOKEN_LIFETIME", seconds(1), 900)
    refresh_lifetime: int = setting("REFRESH_TOKEN_LIFETIME", seconds(1), 604800)
    issuer: str | None = setting("ISSUER", _text)
    audience: tuple[str, ...] = setting("AUDIENCE", _list, ())
    leeway: int = setting("LEEWAY", seconds(0), 0)
    login_rate: tuple[int, int] | None = setting("LOGIN_RATE", _rate, (5, 60))
    login_rate_per_ip: tuple[int, int] | None = setting("LOGIN_RATE_PER_IP", _rate, (60, 60))
    login_rate_per_user: tuple[int, int] | None = setting("LOGIN_RATE_PER_USER", _rate, (30, 3600))
    # an IPv6 client is throttled by its /64 network
    ipv6_prefix: int = setting("IPV6_PREFIX", _prefix, 64)
    trusted_proxies: tuple[Network, ...] = setting("TRUSTED_PROXIES", _networks, ())
    session_max_age: int = setting("SESSION_MAX_AGE", seconds(1), 2592000)
    max_sessions: int = setting("MAX_SESSIONS_PER_USER", count(1), 100)
    reuse_interval: int = setting("REFRESH_REUSE_INTERVAL", seconds(0), 0)
    custom_claims: str | None = setting("CUSTOM_CLAIMS", _text)
    jwks_max_age: int = setting("JWKS_MAX_AGE", seconds(0), 300)
    cookies: bool = setting("COOKIES", _bool, False)
    # None: Secure except for plain http on loopback
    cookie_secure: bool | None = setting("COOKIE_SECURE", _optional_bool)
    cookie_domain: str | None = setting("COOKIE_DOMAIN", _text)
    # None: /metrics is a 404
    metrics_token: str | None = setting("METRICS_TOKEN", _text, secret=True)
    # (client_id, secret) pairs that may call introspection; empty: it answers 404
    resource_clients: tuple[tuple[str, str], ...] = setting(
        "RESOURCE_CLIENTS", _clients, (), secret=True
    )
    # RFC 9449 proof of possession: bind a login's session to its DPoP key; nonces.
    dpop: str = setting("DPOP", choice(("optional", "required", "off"), case=str.lower), "optional")
    dpop_nonce: bool = setting("DPOP_NONCE", _bool, False)
    # The demo project's accounts (django-allauth's headless flows, authapi.allauth), and
    # the web client its mails link to. A host project configures allauth itself.
    accounts: bool = setting("ACCOUNTS", _bool, False)
    frontend_url: str = setting("FRONTEND_URL", _url, "http://localhost:3000")
    # None: the embedded server (settings.REDIS_URL is the fallback)
    redis_url: str | None = setting("REDIS_URL", _redis_url, secret=True)
    # None: settings.DATA_DIR, else var/ beside BASE_DIR (see data_dir())
    data_dir: Path | None = setting("DATA_DIR", _path)
    # Read where LOGGING is built (authapi.logs.logging_config), validated here too.
    log_format: str = setting("LOG_FORMAT", choice(LOG_FORMATS, case=str.lower), "text")
    log_level: str = setting("LOG_LEVEL", choice(LOG_LEVELS, case=str.upper), "INFO")

    @property
    def is_hmac(self) -> bool:
        return self.algorithm in HMAC_ALGORITHMS


_FIELDS = {f.metadata["name"]: f for f in fields(AuthSettings)}
KNOWN: tuple[str, ...] = tuple(_FIELDS)  # every name AUTHAPI takes


def closest(name: str, known: tuple[str, ...] = KNOWN) -> str | None:
    """The known name ``name`` most likely misspells, if any is close."""
    matches = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.6)
    return matches[0] if matches else None


def _unknown(label: str, prefix: str, name: str) -> str:
    guess = closest(name)
    hint = f" Did you mean {prefix + guess!r}?" if guess else ""
    return f"{label} {prefix + name!r} is not an authapi setting.{hint}"


def unknown_keys(raw: Mapping[str, Any]) -> list[str]:
    """A message per key of ``raw`` (an ``AUTHAPI`` dict) that names no setting."""
    return [_unknown("AUTHAPI key", "", str(key)) for key in raw if str(key) not in _FIELDS]


def unknown_environment(environ: Mapping[str, str]) -> list[str]:
    """A message per ``AUTHAPI_*`` variable of ``environ`` that names no setting."""
    names = [key[len(PREFIX) :] for key in environ if key.startswith(PREFIX)]
    return [
        _unknown("Environment variable", PREFIX, name)
        for name in names
        if name not in _FIELDS and name not in ENVIRONMENT_ONLY
    ]


def from_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The known ``AUTHAPI_*`` variables of ``environ``, without the prefix: an ``AUTHAPI``
    dict. Unknown ones are left out (``manage.py check`` warns about them)."""
    return {
        key[len(PREFIX) :]: value
        for key, value in environ.items()
        if key.startswith(PREFIX) and key[len(PREFIX) :] in _FIELDS
    }


def parse(name: str, value: Any) -> Any:
    """One setting's value from raw ``value`` (None: its default); ImproperlyConfigured
    names the setting."""
    spec = _FIELDS[name]
    return spec.metadata["parse"](name, value, spec.default)


def from_mapping(raw: Mapping[str, Any]) -> AuthSettings:
    """Validate a mapping of AUTHAPI names (no prefix) to values; an unknown name is an
    error that names the closest known one."""
    unknown = unknown_keys(raw)
    if unknown:
        raise ImproperlyConfigured(" ".join(unknown))
    values = {spec.name: parse(name, raw.get(name)) for name, spec in _FIELDS.items()}
    return AuthSettings(**values)


def raw() -> dict[str, Any]:
    """``settings.AUTHAPI``, with ``settings.REDIS_URL`` and ``settings.DATA_DIR`` (the
    project's own settings) where it names neither."""
    raw = dict(getattr(settings, "AUTHAPI", None) or {})
    for name in ("REDIS_URL", "DATA_DIR"):
        if raw.get(name) in (None, ""):
            fallback = getattr(settings, name, None)
            raw[name] = str(fallback) if fallback else None
    return raw


@cache
def get() -> AuthSettings:
    """The settings in force, validated once per configuration."""
    return from_mapping(raw())


_reset_hooks: list[Callable[[], None]] = []


def on_reset(hook: Callable[[], None]) -> Callable[[], None]:
    """Register a cache to clear when the settings change (tests' override_settings)."""
    _reset_hooks.append(hook)
    return hook


@receiver(setting_changed)
def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting in {"AUTHAPI", "SECRET_KEY", "SECRET_KEY_FALLBACKS", "REDIS_URL", "DATA_DIR"}:
        get.cache_clear()
        for hook in _reset_hooks:
            hook()


def redis_url() -> str | None:
    """The store's URL: ``AUTHAPI["REDIS_URL"]``, else ``settings.REDIS_URL``; None means
    the embedded server. Reads that one setting only: a fault elsewhere is not its own."""
    value: str | None = parse("REDIS_URL", raw().get("REDIS_URL"))
    return value


def data_dir() -> Path:
    """The data folder: ``AUTHAPI["DATA_DIR"]``, else ``settings.DATA_DIR``, else ``var/``
    beside the project (``BASE_DIR``) or the working directory."""
    value: Path | None = parse("DATA_DIR", raw().get("DATA_DIR"))
    if value is not None:
        return value
    base = getattr(settings, "BASE_DIR", None)
    return Path(base or Path.cwd()) / "var"

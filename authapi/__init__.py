"""authapi: JWT login, rotating refresh and revocation for async Django, on Redis.

The names a project uses come from here::

    from authapi import jwt_bearer, install_error_handlers

They load on first use (PEP 562), so listing ``"authapi"`` in ``INSTALLED_APPS`` imports
nothing that needs Django's app registry.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

__all__ = [
    "AccessContext",
    "AuthApiError",
    "JWTBearer",
    "StoreUnavailable",
    "TokenInvalid",
    "check_access",
    "install_error_handlers",
    "jwt_bearer",
    "serve",
]

_WHERE = {
    "AccessContext": "authapi.auth",
    "JWTBearer": "authapi.auth",
    "check_access": "authapi.auth",
    "jwt_bearer": "authapi.auth",
    "AuthApiError": "authapi.errors",
    "StoreUnavailable": "authapi.errors",
    "TokenInvalid": "authapi.errors",
    "install_error_handlers": "authapi.api",
    "serve": "authapi.asgi.serving",
}

if TYPE_CHECKING:
    from authapi.api import install_error_handlers
    from authapi.asgi.serving import serve
    from authapi.auth import AccessContext, JWTBearer, check_access, jwt_bearer
    from authapi.errors import AuthApiError, StoreUnavailable, TokenInvalid


def __getattr__(name: str) -> Any:
    try:
        module = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module 'authapi' has no attribute {name!r}") from None
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

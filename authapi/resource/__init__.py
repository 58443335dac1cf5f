"""The kit for another service that accepts authapi's access tokens: ``authapi.resource``.

It needs neither authapi's database nor ``"authapi"`` in ``INSTALLED_APPS``; only
settings::

    AUTHAPI_RESOURCE = {
        "JWKS_URL": "https://auth.example.com/.well-known/jwks.json",
        "ISSUER": "https://auth.example.com",      # checked when set (set it on both)
        "AUDIENCE": "orders",                      # checked when set
        "REDIS_URL": "redis://reader:...@store:6379/0",   # the auth service's store, or:
        # "INTROSPECTION_URL": "https://auth.example.com/api/auth/introspect",
        # "CLIENT_ID": "orders", "CLIENT_SECRET": "...",
    }

Then ``auth=resource_bearer`` on Ninja routes (``request.auth.user_id``,
``request.auth.claims``), ``authapi.resource.drf.ResourceAuthentication`` for DRF, or
``await verify(token)`` anywhere (FastAPI / Starlette dependencies). See
:mod:`authapi.resource.checker` for what is checked. Names load on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__all__ = [
    "ResourceBearer",
    "ResourceContext",
    "install_error_handlers",
    "resource_bearer",
    "verify",
]

_WHERE = {
    "ResourceBearer": "authapi.resource.ninja",
    "install_error_handlers": "authapi.resource.ninja",
    "resource_bearer": "authapi.resource.ninja",
    "ResourceContext": "authapi.resource.checker",
    "verify": "authapi.resource.checker",
}

if TYPE_CHECKING:
    from authapi.resource.checker import ResourceContext, verify
    from authapi.resource.ninja import ResourceBearer, install_error_handlers, resource_bearer


def __getattr__(name: str) -> Any:
    try:
        module = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module 'authapi.resource' has no attribute {name!r}") from None
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

"""A host's own ``NinjaAPI`` answers our bearers' refusals whole, with no line of its own.

``auth=jwt_bearer`` (or ``resource_bearer``) is the only line a host writes. Ninja renders
an exception by the handler of its nearest class; for ours (an ``HttpError``) that is
Ninja's default, ``{"detail"}`` and the status: no ``code``, no ``WWW-Authenticate``, no
``Retry-After``. So the first time one of our bearers refuses under an API, that API
learns to render authapi's errors, and the 401 Ninja raises for an operation our bearer
guarded but no credentials reached, as ``{"detail", "code"}`` with their headers.

Nothing else changes: an API whose handler for those errors is the host's own (or
``install_error_handlers``) keeps it, and every other answer stays the host's. What this
reads of Ninja (the operation that calls the bearer, its default handler) is pinned by
``tests/test_bare_ninja.py`` so an upgrade that moves it fails there.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja import errors as ninja_errors

from authapi.errors import AuthApiError, NotAuthenticated

_ADOPTED: weakref.WeakSet[NinjaAPI] = weakref.WeakSet()
_GUARDED = "_authapi_bearer_guarded"  # request attribute: our bearer saw no credentials
_HOPS = 3  # a host's subclass of our bearer may add a frame or two


def calling_api(frame: FrameType | None) -> NinjaAPI | None:
    """The API of the Ninja operation that called the bearer from ``frame`` (Ninja's
    ``_run_authentication``: ``callback(request)`` in a method of an ``Operation``)."""
    for _ in range(_HOPS):
        if frame is None:
            return None
        api = getattr(frame.f_locals.get("self"), "api", None)
        if isinstance(api, NinjaAPI):
            return api
        frame = frame.f_back
    return None


def refused(frame: FrameType | None) -> None:
    """One of our bearers is about to raise an ``AuthApiError`` under ``frame``."""
    api = calling_api(frame)
    if api is not None and api not in _ADOPTED:
        adopt(api)


def unauthenticated(request: HttpRequest, frame: FrameType | None) -> None:
    """Our bearer found no credentials: Ninja raises ``AuthenticationError`` next."""
    setattr(request, _GUARDED, True)
    refused(frame)


def adopt(api: NinjaAPI) -> None:
    """Render our errors (and a guarded operation's missing credentials) on ``api``,
    where its handler for them is still Ninja's default."""
    _ADOPTED.add(api)
    if _is_default(api, NotAuthenticated()):
        api.add_exception_handler(AuthApiError, _ours)
    if _is_default(api, ninja_errors.AuthenticationError()):
        api.add_exception_handler(
            ninja_errors.AuthenticationError,
            _guarded(api._lookup_exception_handler(ninja_errors.AuthenticationError())),
        )


def _is_default(api: NinjaAPI, probe: Exception) -> bool:
    handler = api._lookup_exception_handler(probe)
    return getattr(handler, "func", None) is ninja_errors._default_http_error


def _ours(request: HttpRequest, exc: Any) -> HttpResponse:
    error: AuthApiError = exc
    return error.response()


def _guarded(previous: Callable[..., HttpResponse] | None) -> Callable[..., HttpResponse]:
    def handle(request: HttpRequest, exc: Any) -> HttpResponse:
        if getattr(request, _GUARDED, False) or previous is None:
            return NotAuthenticated().response()
        return previous(request, exc)

    return handle

"""``resource_bearer`` for Django Ninja: ``auth=resource_bearer`` on a route or the API.

With no other line, a refused token is a 401 ``{"detail", "code": "token_not_valid"}``
with an RFC 6750 challenge (``DPoP`` for a bound token), a store or introspection outage
a 503 with ``Retry-After``, as the auth service answers (:mod:`authapi.host_api`).
:func:`install_error_handlers` is kept for APIs that set it; it changes nothing more.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable
from types import FrameType
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError
from ninja.security import HttpBearer

from authapi import host_api
from authapi.errors import AuthApiError, NotAuthenticated
from authapi.resource.checker import ResourceContext, verify


class ResourceBearer(HttpBearer):
    """Async Bearer auth: ``request.auth`` is a :class:`ResourceContext`."""

    def __call__(self, request: HttpRequest) -> Awaitable[ResourceContext] | None:
        caller = sys._getframe(1)  # Ninja's operation: where a refusal is rendered
        value = request.headers.get("Authorization")
        scheme, _, token = (value or "").strip().partition(" ")
        if scheme.lower() == "dpop" and token.strip():  # a DPoP-bound token (RFC 9449)
            return self._check(request, token.strip(), True, caller)
        if scheme.lower() != "bearer" or not token.strip():
            host_api.unauthenticated(request, caller)
            return None  # Ninja answers 401
        return self._check(request, token.strip(), False, caller)

    async def authenticate(self, request: HttpRequest, token: str) -> ResourceContext:
        return await verify(token, request=request, dpop_scheme=False)

    async def _check(
        self, request: HttpRequest, token: str, dpop_scheme: bool, caller: FrameType | None
    ) -> ResourceContext:
        try:
            return await verify(token, request=request, dpop_scheme=dpop_scheme)
        except AuthApiError:
            host_api.refused(caller)
            raise
        finally:
            caller = None  # the operation's frame: never kept past the check


resource_bearer = ResourceBearer()


def _ours(request: HttpRequest, exc: AuthApiError) -> HttpResponse:
    return exc.response()


def _not_authenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return NotAuthenticated().response()


def install_error_handlers(api: NinjaAPI) -> NinjaAPI:
    """Render the kit's refusals as ``{"detail", "code"}`` (401 / 503) on ``api``."""
    handlers: list[tuple[type[Exception], Any]] = [
        (AuthApiError, _ours),
        (AuthenticationError, _not_authenticated),
    ]
    for exc_class, handler in handlers:
        api.add_exception_handler(exc_class, handler)
    return api

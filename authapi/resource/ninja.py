"""``resource_bearer`` for Django Ninja: ``auth=resource_bearer`` on a route or the API.

Call :func:`install_error_handlers` on that ``NinjaAPI``: a refused token is then a 401
``{"detail", "code": "token_not_valid"}`` with an RFC 6750 challenge, a store outage a
503 with ``Retry-After``, as the auth service answers. Without it, Ninja's own handler
still answers 401 / 503 ``{"detail"}`` (a refusal is an ``HttpError``), never a 500.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.security import HttpBearer

from authapi.errors import AuthApiError, NotAuthenticated
from authapi.resource.checker import ResourceContext, verify


class ResourceRefused(HttpError):
    """A refusal of the kit (TokenInvalid 401, StoreUnavailable 503) as Ninja's HttpError."""

    def __init__(self, error: AuthApiError) -> None:
        super().__init__(error.status, error.message)
        self.error = error


class ResourceBearer(HttpBearer):
    """Async Bearer auth: ``request.auth`` is a :class:`ResourceContext`."""

    def __call__(self, request: HttpRequest) -> Awaitable[ResourceContext] | None:
        value = request.headers.get("Authorization")
        if not value:
            return None  # Ninja answers 401
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() == "dpop":  # a DPoP-bound token and its proof (RFC 9449)
            return self._check(request, token.strip(), dpop_scheme=True)
        if scheme.lower() != "bearer":
            return None
        return self.authenticate(request, token.strip())

    async def authenticate(self, request: HttpRequest, token: str) -> ResourceContext:
        return await self._check(request, token, dpop_scheme=False)

    async def _check(
        self, request: HttpRequest, token: str, *, dpop_scheme: bool
    ) -> ResourceContext:
        try:
            return await verify(token, request=request, dpop_scheme=dpop_scheme)
        except AuthApiError as exc:
            raise ResourceRefused(exc) from None


resource_bearer = ResourceBearer()


def _ours(request: HttpRequest, exc: AuthApiError) -> HttpResponse:
    return exc.response()


def _refused(request: HttpRequest, exc: ResourceRefused) -> HttpResponse:
    return exc.error.response()


def _not_authenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return NotAuthenticated().response()


def install_error_handlers(api: NinjaAPI) -> NinjaAPI:
    """Render the kit's refusals as ``{"detail", "code"}`` (401 / 503) on ``api``."""
    handlers: list[tuple[type[Exception], Any]] = [
        (ResourceRefused, _refused),
        (AuthApiError, _ours),
        (AuthenticationError, _not_authenticated),
    ]
    for exc_class, handler in handlers:
        api.add_exception_handler(exc_class, handler)
    return api

"""``ResourceAuthentication`` for Django REST framework, on :func:`checker.verify`.

``request.user`` is a :class:`ResourceUser` made from the claims (no database);
``request.auth`` the :class:`ResourceContext` (``request.auth["user_id"]`` works as with
simplejwt's token). Refusals: 401 ``{"detail", "code": "token_not_valid"}``; the store
down: 503 ``service_unavailable``, never a pass.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from asgiref.sync import async_to_sync
from django.core.handlers.asgi import ASGIRequest
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from authapi import dpop
from authapi.errors import DPoPInvalid, StoreUnavailable, TokenInvalid
from authapi.resource.checker import ResourceContext, verify

__all__ = ["ResourceAuthentication", "ResourceUser", "ServiceUnavailable"]
T = TypeVar("T")


class ServiceUnavailable(exceptions.APIException):
    status_code = StoreUnavailable.status
    default_code = StoreUnavailable.code

    def __init__(self, detail: str) -> None:
        super().__init__({"detail": detail, "code": self.default_code})
        self.wait = int(StoreUnavailable.headers["Retry-After"])


class ResourceUser:
    """The user a verified token names; no database behind it."""

    is_active = True
    is_authenticated = True
    is_anonymous = False

    def __init__(self, access: ResourceContext) -> None:
        self.access = access

    @property
    def id(self) -> int | str:
        return self.access.user_id

    pk = id

    @property
    def claims(self) -> dict[str, Any]:
        return self.access.claims

    def __str__(self) -> str:
        return f"ResourceUser {self.id}"


class _LoopThread:
    """One loop in a daemon thread for WSGI callers (a new loop per request would mean a
    new store connection per request)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._get()).result()

    def _get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                threading.Thread(
                    target=loop.run_forever, name="authapi-resource", daemon=True
                ).start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop


_wsgi_loop = _LoopThread()


class ResourceAuthentication(BaseAuthentication):
    www_authenticate_realm = "api"

    def authenticate(self, request: Request) -> tuple[ResourceUser, ResourceContext] | None:
        value = request.META.get("HTTP_AUTHORIZATION")
        words = value.split() if isinstance(value, str) else []
        if not words or words[0].lower() not in ("bearer", "dpop"):
            return None
        if len(words) != 2:
            raise exceptions.AuthenticationFailed(
                {
                    "detail": "Authorization header must contain two space-delimited values",
                    "code": "bad_authorization_header",
                }  # fmt: skip
            )
        http, dpop_scheme = request._request, words[0].lower() == "dpop"
        try:
            if isinstance(http, ASGIRequest):
                access = async_to_sync(verify)(words[1], request=http, dpop_scheme=dpop_scheme)
            else:
                access = _wsgi_loop.run(verify(words[1], request=http, dpop_scheme=dpop_scheme))
        except TokenInvalid as exc:
            if isinstance(exc, DPoPInvalid):  # a bound token: the challenge says DPoP
                request._authapi_dpop = True  # type: ignore[attr-defined]
            raise exceptions.AuthenticationFailed(
                {"detail": exc.message, "code": exc.code}
            ) from None
        except StoreUnavailable as exc:
            raise ServiceUnavailable(exc.message) from exc
        return ResourceUser(access), access

    def authenticate_header(self, request: Request) -> str:
        sent = request.META.get("HTTP_AUTHORIZATION")
        bound = getattr(request, "_authapi_dpop", False)
        if bound or (isinstance(sent, str) and sent.strip().lower().startswith("dpop ")):
            algs = " ".join(dpop.ALGORITHMS)
            realm = self.www_authenticate_realm
            return f'DPoP realm="{realm}", error="invalid_dpop_proof", algs="{algs}"'
        challenge = f'Bearer realm="{self.www_authenticate_realm}"'
        if request.META.get("HTTP_AUTHORIZATION"):
            challenge += ', error="invalid_token"'
        return challenge

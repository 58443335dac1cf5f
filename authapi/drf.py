"""Django REST framework authentication on authapi's access check (extra ``authapi[drf]``).

The way over from djangorestframework-simplejwt is one line of settings::

    REST_FRAMEWORK = {"DEFAULT_AUTHENTICATION_CLASSES": ["authapi.drf.JWTAuthentication"]}

The check is ``authapi.auth.check_access``: one signature check and one Redis command, so
a token of a logged-out session, or of a user who logged out everywhere, is refused at
once. Refusals answer as simplejwt's do: 401 ``{"detail", "code": "token_not_valid",
"messages"}`` with ``WWW-Authenticate: Bearer realm="api"``; a Redis outage is a 503
(``service_unavailable``, ``Retry-After``), never a pass.

* ``JWTAuthentication``: ``request.user`` is the database user, one query per request,
  like simplejwt's ``JWTAuthentication``.
* ``JWTStatelessAuthentication``: ``request.user`` is a ``TokenUser`` made from the claims
  with no query (simplejwt's ``JWTStatelessUserAuthentication``); reading an attribute it
  does not have (``username``, ``is_staff``, ``has_perm``...) loads the database user once.

``request.auth`` is a ``ValidatedToken``: the ``authapi.auth.AccessContext`` (``user_id``,
``sid``, ``jti``, ``claims``) that also reads as simplejwt's ``AccessToken`` does
(``request.auth["user_id"]``, ``.get()``, ``in``, ``.payload``, ``.token``, ``str()``).
``tokens_for_user(user)``, ``logout(refresh)`` and ``logout_all(user)`` stand for
simplejwt's token classes used directly: ``RefreshToken.for_user(user)``,
``RefreshToken(refresh).blacklist()`` and blacklisting each of a user's
``OutstandingToken``. Only this module imports DRF; ``import authapi`` never does.

DRF views are sync. Under ASGI they run in a thread of asgiref's, from which
``async_to_sync`` runs the check on the server's event loop and its pooled connections.
Under WSGI there is no such loop: ``async_to_sync`` would make a new loop per request, and
with it a new Redis connection, so the check runs on one loop thread kept by this module.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.core.handlers.asgi import ASGIRequest
from django.db import DatabaseError
from django.http import HttpRequest
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from authapi import dpop, sessions, users
from authapi.auth import AccessContext, check_access
from authapi.errors import DatabaseUnavailable, DPoPInvalid, StoreUnavailable, TokenInvalid

__all__ = [
    "JWTAuthentication",
    "JWTStatelessAuthentication",
    "ServiceUnavailable",
    "TokenUser",
    "ValidatedToken",
    "logout",
    "logout_all",
    "tokens_for_user",
]

T = TypeVar("T")


class ServiceUnavailable(exceptions.APIException):
    """503 ``{"detail", "code": "service_unavailable"}`` with ``Retry-After``: fail closed."""

    status_code = StoreUnavailable.status
    default_detail = StoreUnavailable.detail
    default_code = StoreUnavailable.code

    def __init__(self, detail: str | None = None) -> None:
        super().__init__({"detail": detail or StoreUnavailable.detail, "code": self.default_code})
        self.wait = int(StoreUnavailable.headers["Retry-After"])  # DRF's Retry-After


def _failed(detail: str, code: str, **extra: Any) -> exceptions.AuthenticationFailed:
    """simplejwt's error body: ``{"detail", "code", ...}`` instead of DRF's bare detail."""
    return exceptions.AuthenticationFailed({"detail": detail, "code": code, **extra})


class _LoopThread:
    """One event loop in a daemon thread, for sync callers with no loop to reach (WSGI)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return asyncio.run_coroutine_threadsafe(make(), self._get()).result()

    def _get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():  # none yet, or forked since
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="authapi-drf", daemon=True)
                thread.start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop


_wsgi_loop = _LoopThread()


def _run(request: HttpRequest | None, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Under ASGI on the server's loop (its pooled connections), else on our loop thread."""
    if isinstance(request, ASGIRequest):

        async def main() -> T:
            return await make()

        return async_to_sync(main)()
    return _wsgi_loop.run(make)


def _check(request: Request, token: str, dpop_scheme: bool = False) -> AccessContext:
    http = request._request
    return _run(http, lambda: check_access(token, request=http, dpop_scheme=dpop_scheme))


class ValidatedToken(AccessContext):
    """``request.auth``: an ``AccessContext`` that reads as simplejwt's ``AccessToken``.

    ``token["user_id"]``, ``token.get(...)``, ``"claim" in token`` and ``token.payload``
    read the verified claims (an integer primary key stays an integer: simplejwt 5.5 wrote
    ``"42"``); ``token.token`` is the raw token (bytes, as simplejwt keeps it) and
    ``str(token)`` the token itself, to pass on to another service.
    """

    __slots__ = ("token",)
    token_type = "access"

    def __init__(self, access: AccessContext, token: str) -> None:
        super().__init__(access.claims, access.profile, access.profile_json)
        self.token = token.encode("ascii")  # decoded, so the compact form: ASCII only

    def __str__(self) -> str:
        return self.token.decode("ascii")


def tokens_for_user(user: Any, request: Request | HttpRequest | None = None) -> dict[str, Any]:
    """A new session for ``user`` and its first pair, as login answers it (``access``,
    ``refresh``, ``token_type``, ``expires_in``, ``refresh_expires_in``): where simplejwt
    code called ``RefreshToken.for_user(user)`` (a sign-up view, a test). No password is
    checked: the caller vouches for the user. ``request`` (when there is one) gives the
    session its IP and User-Agent. An inactive user gets ``ValueError``; Redis down
    ``StoreUnavailable``.
    """
    if not getattr(user, "is_active", True):
        raise ValueError("tokens_for_user: the user is inactive")
    http = _http(request)
    _, pair = _run(http, lambda: sessions.start(user, http or HttpRequest()))
    return pair


def _load_user(user_id: int | str) -> Any:
    """The active database user ``user_id`` names (one query), else simplejwt's 401."""
    model = get_user_model()
    try:
        user = model._default_manager.filter(pk=user_id).first()
    except (ValueError, TypeError):
        user = None
    except DatabaseError as exc:
        raise ServiceUnavailable(DatabaseUnavailable.detail) from exc
    if user is None:
        raise _failed("User not found", "user_not_found")
    if not user.is_active:
        raise _failed("User is inactive", "user_inactive")
    return user


def _http(request: Request | HttpRequest | None) -> HttpRequest | None:
    return request._request if isinstance(request, Request) else request


def logout(refresh: str, request: Request | HttpRequest | None = None) -> None:
    """End the session ``refresh`` belongs to, its access tokens refused at once: where
    simplejwt code called ``RefreshToken(refresh).blacklist()``. ``TokenInvalid`` for a
    token that is not a live refresh token; Redis down ``StoreUnavailable``. A DPoP-bound
    token needs ``request`` with a proof by its key (``DPoPInvalid`` without one)."""
    http = _http(request)
    _run(http, lambda: sessions.logout(http or HttpRequest(), refresh, None))


def logout_all(user: Any, request: Request | HttpRequest | None = None) -> int:
    """End every session of ``user``: where simplejwt code blacklisted each of the user's
    ``OutstandingToken``. The number of sessions ended."""
    http = _http(request)
    return _run(http, lambda: sessions.revoke_all(http, users.user_id_of(user), "logout_all"))


class JWTAuthentication(BaseAuthentication):
    """``Authorization: Bearer <access token>``, checked against revocation; loads the user.

    A DPoP-bound token (RFC 9449) comes as ``Authorization: DPoP <token>`` with its proof in
    the ``DPoP`` header, as for the Ninja class.
    """

    www_authenticate_realm = "api"
    header_types: tuple[str, ...] = ("Bearer", "DPoP")  # simplejwt's AUTH_HEADER_TYPES

    def authenticate(self, request: Request) -> tuple[Any, ValidatedToken] | None:
        token = self.get_raw_token(request)
        if token is None:
            return None  # not ours: another class may try, else DRF's 401 not_authenticated
        access = self.get_validated_token(request, token)
        return self.get_user(access), access

    def authenticate_header(self, request: Request) -> str:
        words = self.get_header(request)
        bound = getattr(request, "_authapi_dpop", False)
        if bound or (words is not None and words[0].lower() == "dpop"):
            algs = " ".join(dpop.ALGORITHMS)
            realm = self.www_authenticate_realm
            return f'DPoP realm="{realm}", error="invalid_dpop_proof", algs="{algs}"'
        challenge = f'{self.header_types[0]} realm="{self.www_authenticate_realm}"'
        if words is not None:
            challenge += ', error="invalid_token"'  # RFC 6750 3.1: a token was sent
        return challenge

    def get_header(self, request: Request) -> list[str] | None:
        """The words of the Authorization header when its scheme is one of ``header_types``."""
        value = request.META.get("HTTP_AUTHORIZATION")
        if isinstance(value, bytes):
            value = value.decode("latin-1")  # the Django test client may send bytes
        words = value.split() if isinstance(value, str) else []
        wanted = {kind.lower() for kind in self.header_types}
        return words if words and words[0].lower() in wanted else None

    def get_raw_token(self, request: Request) -> str | None:
        """The token of the header; None when the header is absent or of another scheme."""
        words = self.get_header(request)
        if words is None:
            return None
        if len(words) != 2:
            raise _failed(
                "Authorization header must contain two space-delimited values",
                "bad_authorization_header",
            )
        return words[1]

    def get_validated_token(self, request: Request, token: str) -> ValidatedToken:
        """Signature, claims and revocation: 401 token_not_valid, or 503 without Redis."""
        try:
            words = self.get_header(request) or [""]
            return ValidatedToken(_check(request, token, words[0].lower() == "dpop"), token)
        except TokenInvalid as exc:
            if isinstance(exc, DPoPInvalid):  # a bound token: the challenge says DPoP
                request._authapi_dpop = True  # type: ignore[attr-defined]
            message = {"token_class": "AccessToken", "token_type": "access", "message": exc.message}
            raise _failed(
                "Given token not valid for any token type", TokenInvalid.code, messages=[message]
            ) from None
        except StoreUnavailable as exc:
            raise ServiceUnavailable(exc.message) from exc

    def get_user(self, access: AccessContext) -> Any:
        return _load_user(access.user_id)


class JWTStatelessAuthentication(JWTAuthentication):
    """As ``JWTAuthentication``, with a ``TokenUser`` for ``request.user``: no query."""

    def get_user(self, access: AccessContext) -> Any:
        return TokenUser(access)


class TokenUser:
    """The user a verified token names, from its claims; the database user on demand.

    ``id``, ``pk``, ``is_authenticated``, ``claims`` and ``token`` (the ``ValidatedToken``,
    as simplejwt's ``TokenUser.token``) cost nothing; any other attribute is read from the
    database user, loaded once (one query) on first use. simplejwt's ``TokenUser`` read
    those from the token's claims instead (``""``/``False``/``None`` when absent).
    """

    __slots__ = ("access", "_user")
    is_active = True  # a token of an inactive user is revoked with its sessions
    is_authenticated = True
    is_anonymous = False

    def __init__(self, access: AccessContext) -> None:
        self.access = access
        self._user: Any = None

    @property
    def id(self) -> int | str:
        return self.access.user_id

    @property
    def pk(self) -> int | str:
        return self.access.user_id

    @property
    def claims(self) -> dict[str, Any]:
        return dict(self.access.claims.payload)

    @property
    def token(self) -> AccessContext:
        return self.access

    @property
    def user(self) -> Any:
        """The database user (one query, then cached); 401 if deleted or inactive."""
        if self._user is None:
            self._user = _load_user(self.access.user_id)
        return self._user

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.user, name)

    def __str__(self) -> str:
        return f"TokenUser {self.id}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TokenUser):
            return NotImplemented
        return self.id == other.id

    def __hash__(self) -> int:
        return hash(self.id)

"""``JWTBearer``: the access check. One signature check, one Redis command, no database."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer

from authapi import cookies, store, tokens, users
from authapi.errors import TokenInvalid


class AccessContext:
    """What ``request.auth`` holds: the verified claims; the user only when asked for."""

    __slots__ = ("claims", "_user")

    def __init__(self, claims: tokens.Claims) -> None:
        self.claims = claims
        self._user: Any = None

    @property
    def user_id(self) -> int | str:
        return self.claims.user_id

    @property
    def sid(self) -> str:
        return self.claims.sid

    @property
    def jti(self) -> str:
        return self.claims.jti

    async def auser(self) -> Any:
        """The user the token names (one database query, cached); TokenInvalid if gone."""
        if self._user is None:
            user = await users.get_user(self.claims.user_id)
            if user is None or not user.is_active:
                raise TokenInvalid("User is inactive or deleted")
            self._user = user
        return self._user


def bearer_token(request: HttpRequest) -> str | None:
    """The token of an ``Authorization: Bearer`` header; None when there is no such header."""
    value = request.headers.get("Authorization")
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


async def check_access(token: str) -> AccessContext:
    """Verify an access token and that it is not revoked."""
    claims = tokens.decode(token, "access")
    if not await store.access_allowed(claims.user_id, claims.sid, claims.jti):
        raise TokenInvalid("Token has been revoked")
    return AccessContext(claims)


class JWTBearer(HttpBearer):
    """Async Bearer auth for Ninja views, sync or async; never logs the credential."""

    def __call__(self, request: HttpRequest) -> Awaitable[AccessContext] | None:
        token = bearer_token(request)
        if token is None:
            token = cookies.access_token(request)  # AUTHAPI_COOKIES: CSRF-checked
        if token is None:
            return None  # Ninja answers 401 not_authenticated
        return self.authenticate(request, token)

    async def authenticate(self, request: HttpRequest, token: str) -> AccessContext:
        return await check_access(token)


jwt_bearer = JWTBearer()

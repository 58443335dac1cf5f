"""``JWTBearer``: the access check. One signature check, one Redis command, no database."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer

from authapi import cookies, store, tokens, users
from authapi.errors import TokenInvalid


class AccessContext:
    """What ``request.auth`` holds: the verified claims; the user only when asked for."""

    __slots__ = ("claims", "_user", "profile", "profile_json")

    def __init__(
        self,
        claims: tokens.Claims,
        profile: dict[str, Any] | None = None,
        profile_json: str | None = None,
    ) -> None:
        self.claims = claims
        self._user: Any = None
        #: The user's public fields as the session last saw them (``JWTBearer(profile=True)``):
        #: set at login and each refresh, updated when the user is saved. None if not read.
        self.profile = profile
        #: The same as the JSON the session keeps, when it has exactly those fields.
        self.profile_json = profile_json

    @property
    def user_id(self) -> int | str:
        return self.claims.user_id

    @property
    def sid(self) -> str:
        return self.claims.sid

    @property
    def jti(self) -> str:
        return self.claims.jti

    # Read like simplejwt's token (``request.auth["user_id"]``): the verified claims.
    @property
    def payload(self) -> dict[str, Any]:
        return self.claims.payload

    def __getitem__(self, claim: str) -> Any:
        return self.claims.payload[claim]

    def __contains__(self, claim: object) -> bool:
        return claim in self.claims.payload

    def get(self, claim: str, default: Any = None) -> Any:
        return self.claims.payload.get(claim, default)

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


# Schemes a client may mean to carry a JWT under; any other word is not echoed (it may be
# the token itself, sent with no scheme at all).
_OTHER_SCHEMES = {"jwt": "JWT", "token": "Token", "basic": "Basic", "dpop": "DPoP"}


def scheme_hint(request: HttpRequest) -> str | None:
    """What to tell a client whose ``Authorization`` header is not ``Bearer``; None if it is
    Bearer or absent."""
    value = (request.headers.get("Authorization") or "").strip()
    scheme = value.partition(" ")[0]
    if not value or scheme.lower() == "bearer":
        return None
    named = _OTHER_SCHEMES.get(scheme.lower())
    used = f"the {named} scheme" if named else "no scheme this API knows"
    return (
        f"The Authorization header uses {used}: send the access token as "
        "'Authorization: Bearer <token>'."
    )


async def check_access(token: str, *, profile: bool = False) -> AccessContext:
    """Verify an access token and that it is not revoked; with ``profile``, the same one
    Redis command also brings the user's public fields."""
    claims = tokens.decode(token, "access")
    if not profile:
        if not await store.access_allowed(claims.user_id, claims.sid, claims.jti):
            raise TokenInvalid("Token has been revoked")
        return AccessContext(claims)
    allowed, snapshot = await store.access_profile(claims.user_id, claims.sid, claims.jti)
    if not allowed:
        raise TokenInvalid("Token has been revoked")
    value = _loads(snapshot)
    exact = snapshot if value is not None and value.keys() == users.PROFILE_KEYS else None
    return AccessContext(claims, value, exact)


def _loads(snapshot: str | None) -> dict[str, Any] | None:
    if not snapshot:
        return None
    try:
        value = json.loads(snapshot)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class JWTBearer(HttpBearer):
    """Async Bearer auth for Ninja views, sync or async; never logs the credential.

    ``JWTBearer(profile=True)`` also fills ``request.auth.profile`` (same one command).
    """

    def __init__(self, *, profile: bool = False) -> None:
        super().__init__()
        self.with_profile = profile

    def __call__(self, request: HttpRequest) -> Awaitable[AccessContext] | None:
        token = bearer_token(request)
        if token is None:
            token = cookies.access_token(request)  # AUTHAPI_COOKIES: CSRF-checked
        if token is None:
            return None  # Ninja answers 401 not_authenticated
        return self.authenticate(request, token)

    async def authenticate(self, request: HttpRequest, token: str) -> AccessContext:
        return await check_access(token, profile=self.with_profile)


jwt_bearer = JWTBearer()

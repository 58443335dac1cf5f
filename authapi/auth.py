"""``JWTBearer``: the access check. One signature check, one Redis command, no database.

A DPoP-bound token (claim ``cnf.jkt``) comes as ``Authorization: DPoP <token>`` with a
proof by the same key: one more signature check, and the proof's jti claimed in the same
single command as the revocation read.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable
from types import FrameType
from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer

from authapi import cookies, dpop, host_api, store, tokens, users
from authapi.errors import AuthApiError, DPoPInvalid, TokenInvalid


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


def credentials(request: HttpRequest) -> tuple[str, str] | None:
    """(scheme, token) of the Authorization header, the scheme lower case; None without one."""
    value = request.headers.get("Authorization")
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    return scheme.lower(), token.strip()


# Schemes a client may mean to carry a JWT under; any other word is not echoed (it may be
# the token itself, sent with no scheme at all).
_OTHER_SCHEMES = {"jwt": "JWT", "token": "Token", "basic": "Basic"}


def scheme_hint(request: HttpRequest) -> str | None:
    """What to tell a client whose ``Authorization`` header is not ``Bearer``; None if it is
    Bearer or absent."""
    value = (request.headers.get("Authorization") or "").strip()
    scheme = value.partition(" ")[0]
    if not value or scheme.lower() in ("bearer", "dpop"):
        return None
    named = _OTHER_SCHEMES.get(scheme.lower())
    used = f"the {named} scheme" if named else "no scheme this API knows"
    return (
        f"The Authorization header uses {used}: send the access token as "
        "'Authorization: Bearer <token>'."
    )


def bearer_token(request: HttpRequest) -> str | None:
    """The token of an ``Authorization: Bearer`` header; None when there is no such header."""
    found = credentials(request)
    return found[1] if found is not None and found[0] == "bearer" else None


_BOUND = 'DPoP error="invalid_token", algs="ES256 ES384 PS256 RS256 EdDSA"'


async def check_access(
    token: str,
    *,
    profile: bool = False,
    request: HttpRequest | None = None,
    dpop_scheme: bool = False,
) -> AccessContext:
    """Verify an access token and that it is not revoked; with ``profile``, the same one
    Redis command also brings the user's public fields.

    ``dpop_scheme``: the token came as ``Authorization: DPoP``; a bound token is accepted
    only so, with a proof for ``request``, and an unbound one never so.
    """
    claims = tokens.decode(token, "access")
    if claims.jkt is not None:
        return await _check_bound(token, claims, profile, request if dpop_scheme else None)
    if dpop_scheme:
        raise TokenInvalid("This access token is not DPoP-bound: send it as Bearer")
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


async def _check_bound(
    token: str, claims: tokens.Claims, profile: bool, request: HttpRequest | None
) -> AccessContext:
    if request is None:
        refused = DPoPInvalid(
            "This token is DPoP-bound: send it as 'Authorization: DPoP' with a proof"
        )
        refused.extra_headers["WWW-Authenticate"] = _BOUND
        raise refused
    proof = dpop.check_request(request, access_token=token, required=True)
    if proof is None or proof.jkt != claims.jkt:
        raise DPoPInvalid("The DPoP proof is signed by another key than the token is bound to")
    key = store.dpop_jti_key(claims.user_id, proof.jkt, proof.jti)
    allowed, fresh, snapshot = await store.access_allowed_dpop(
        claims.user_id, claims.sid, claims.jti, key, dpop.proof_ttl_ms()
    )
    if not allowed:
        raise TokenInvalid("Token has been revoked")
    if not fresh:
        raise DPoPInvalid("The DPoP proof was used before (its jti is spent)")
    if not profile:
        return AccessContext(claims)
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


async def _noted(
    request: HttpRequest, check: Awaitable[AccessContext], caller: FrameType | None
) -> AccessContext:
    """A refusal, rendered whole on any NinjaAPI (:mod:`authapi.host_api`)."""
    try:
        return await check
    except AuthApiError:
        host_api.refused(caller)
        raise
    finally:
        caller = None  # the operation's frame: never kept past the check


class JWTBearer(HttpBearer):
    """Async Bearer auth for Ninja views, sync or async; never logs the credential.

    ``JWTBearer(profile=True)`` also fills ``request.auth.profile`` (same one command).
    On a host's own ``NinjaAPI`` a refusal is a 401 ``{"detail", "code"}`` with its
    ``WWW-Authenticate``, an outage a 503 with ``Retry-After``, with no other line.
    """

    def __init__(self, *, profile: bool = False) -> None:
        super().__init__()
        self.with_profile = profile

    def __call__(self, request: HttpRequest) -> Awaitable[AccessContext] | None:
        caller = sys._getframe(1)  # Ninja's operation: where a refusal is rendered
        found = credentials(request)
        if found is not None and found[0] == "dpop":
            check = check_access(
                found[1], profile=self.with_profile, request=request, dpop_scheme=True
            )
            return _noted(request, check, caller)
        token = found[1] if found is not None and found[0] == "bearer" else None
        if token is None:
            try:
                token = cookies.access_token(request)  # AUTHAPI_COOKIES: CSRF-checked
            except AuthApiError:
                host_api.refused(caller)
                raise
        if token is None:
            host_api.unauthenticated(request, caller)
            return None  # Ninja answers 401 not_authenticated
        return _noted(request, self.authenticate(request, token), caller)

    async def authenticate(self, request: HttpRequest, token: str) -> AccessContext:
        return await check_access(token, profile=self.with_profile, request=request)


jwt_bearer = JWTBearer()

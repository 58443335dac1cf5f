"""``TokenStrategy``: django-allauth's headless token strategy, minting this service's
sessions and tokens.

Every allauth flow that ends authenticated (after its last stage) gets a session of ours,
listed at ``/api/auth/sessions``, and its pair. The Django session allauth keeps for the
flow is bound to that session both ways: the session hash names the Django session
(``dj``) and the Django session names ours (``authapi_sid``), so:

- ``Authorization: Bearer <our access token>`` opens the flow's Django session at
  allauth's endpoints, refused once the token or its session is revoked;
- ``X-Session-Token`` (allauth's own handle, for a pending flow) opens it only while the
  session of ours it is bound to lives: when that ends, at whatever door, the Django
  session is deleted on its next use and nothing of the login is left alive; when the
  Django session ends first (it expires with our session's cap, or is deleted), the next
  use of our token at allauth's endpoints ends ours;
- ``/tokens/refresh`` spends the refresh token by the same script and rule as
  ``/api/auth/refresh``: a replay at either door ends the family.

allauth's views are sync and run in a thread: every store call here is the blocking
client of :mod:`authapi.syncstore`, never the event loop's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import ContextVar
from importlib import import_module
from typing import Any, TypeVar

from allauth.account.authentication import get_authentication_records
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.headless.tokens.strategies.base import AbstractTokenStrategy
from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest

from authapi import conf, events, sessions, syncstore, tokens, users
from authapi.allauth.amr import of_records
from authapi.errors import AuthApiError, StoreUnavailable, TokenInvalid

SID, UID, BOUND = "authapi_sid", "authapi_uid", "authapi_dj"  # keys in the Django session
F = TypeVar("F", bound=Callable[..., Any])

# The request being served: refresh_token() is handed the token alone, yet the session
# it rotates records the client's address and user agent, as our refresh does.
_request: ContextVar[HttpRequest | None] = ContextVar("authapi_allauth_request", default=None)


def _answers_errors(method: F) -> F:
    """Our errors (a store outage: 503) answer as themselves through allauth's views."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except StoreUnavailable as exc:
            raise ImmediateHttpResponse(exc.response()) from exc

    return wrapper  # type: ignore[return-value]


def _bearer(request: HttpRequest) -> str | None:
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    credential = credential.strip()
    return credential if scheme.lower() == "bearer" and credential else None


def _django_session(key: str) -> SessionBase | None:
    """The Django session stored under ``key``, or None (missing, expired)."""
    engine = import_module(settings.SESSION_ENGINE)
    session: SessionBase = engine.SessionStore(session_key=key)
    session.get(SESSION_KEY)  # loads it; a missing or expired one forgets its key
    return session if session.session_key else None


class TokenStrategy(AbstractTokenStrategy):
    """``HEADLESS_TOKEN_STRATEGY = "authapi.allauth.TokenStrategy"``."""

    @_answers_errors
    def get_session_token(self, request: HttpRequest) -> str | None:
        _request.set(request)
        token: str | None = super().get_session_token(request)  # X-Session-Token
        if token:
            return token
        access = _bearer(request)
        return self._bound_key(access) if access else None

    def _bound_key(self, access: str) -> str | None:
        """The Django session our live access token's session is bound to, if any."""
        try:
            claims = tokens.decode(access, "access")
        except TokenInvalid:
            return None
        if claims.jkt is not None:
            return None  # bound to a DPoP key: a Bearer copy of it opens nothing
        uid, revoked, key = syncstore.session_fields(
            claims.user_id, claims.sid, "uid", f"rj:{claims.jti}", "dj"
        )
        if uid != str(claims.user_id) or revoked is not None or not key:
            return None
        if _django_session(key) is None:
            # allauth's session ended (expired, deleted by an operator): ours ends with it
            if syncstore.revoke_session(claims.user_id, claims.sid):
                _ended(claims, "allauth_session_ended")
            return None
        return key

    @_answers_errors
    def lookup_session(self, session_token: str) -> SessionBase | None:
        session = _django_session(session_token)
        if session is None:
            return None
        sid, uid = session.get(SID), session.get(UID)
        if sid is None or uid is None:
            return session  # a pending flow, not yet a session of ours
        alive = syncstore.session_fields(uid, sid, "uid")[0] == str(uid)
        if not alive:  # ended at some door: the flow's Django session ends with it
            session.delete()
            return None
        return session

    @_answers_errors
    def create_session_token(self, request: HttpRequest) -> str:
        if not request.session.session_key:
            request.session.save()
        key = request.session.session_key
        assert isinstance(key, str)  # saved just now
        sid, uid = request.session.get(SID), request.session.get(UID)
        if sid is not None and uid is not None and request.session.get(BOUND) != key:
            # allauth cycled the key (a password change): follow it
            if syncstore.set_fields(uid, sid, {"dj": key}):
                request.session[BOUND] = key
        return key

    @_answers_errors
    def create_access_token_payload(self, request: HttpRequest) -> dict[str, Any] | None:
        pair = self._mint(request)
        if pair is None:
            return None
        payload = {
            "access_token": pair["access"],
            "refresh_token": pair["refresh"],
            "expires_in": pair["expires_in"],
        }
        return payload

    @_answers_errors
    def create_access_token(self, request: HttpRequest) -> str | None:
        pair = self._mint(request)
        return pair["access"] if pair is not None else None

    def _mint(self, request: HttpRequest) -> dict[str, Any] | None:
        """A new session of ours for the user allauth just authenticated; once per request,
        however many times allauth asks."""
        minted: dict[str, Any] | None = getattr(request, "_authapi_pair", None)
        if minted is not None:
            return minted
        user = request.user
        if not user.is_authenticated:
            return None
        key = self.create_session_token(request)
        amr = of_records(get_authentication_records(request, user)) or sessions.PASSWORD
        plan = sessions.opening(user, request, amr=amr, fields={"dj": key})
        for old in syncstore.start_session(**plan.call):
            events.emit_sync(
                "session_revoked", user_id=plan.uid, session_id=old, reason="session_limit"
            )
        request.session[SID], request.session[UID] = plan.sid, plan.uid
        request.session[BOUND] = key
        # The Django session lives as long as ours may: neither outlives the other.
        request.session.set_expiry(conf.get().session_max_age)
        request._authapi_pair = plan.pair  # type: ignore[attr-defined]
        events.emit_sync("login_succeeded", user_id=plan.uid, session_id=plan.sid, door="allauth")
        return plan.pair

    @classmethod
    def openapi_spec(cls) -> dict[str, Any]:
        """allauth's document names X-Session-Token only; our access token opens it too."""
        spec: dict[str, Any] = super().openapi_spec()
        spec["securitySchemes"]["Bearer"] = {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An access token of this service (not DPoP-bound).",
        }
        spec["security"] = [{"Bearer": []}, *spec["security"]]
        return spec

    @_answers_errors
    def refresh_token(self, refresh_token: str) -> tuple[str, str] | None:
        request = _request.get()
        try:
            pair = rotate(refresh_token, request)
        except StoreUnavailable:
            raise  # 503: the token may still be good, not "invalid" (allauth's 400)
        except AuthApiError:
            return None
        return pair["access"], pair["refresh"]


def rotate(token: str, request: HttpRequest | None) -> dict[str, Any]:
    """Spend a refresh token at allauth's door: :func:`authapi.sessions.refresh`'s rule on
    the sync client. A DPoP-bound token is refused here (this door takes no proof) and
    stays unspent; its owner refreshes at ``/api/auth/refresh`` with the proof."""
    claims = tokens.decode(token, "refresh")
    if claims.jkt is not None:
        raise TokenInvalid("A DPoP-bound refresh token is spent at /api/auth/refresh only")
    user = get_user_model()._default_manager.filter(pk=claims.user_id).first()
    if user is None or not user.is_active:
        if syncstore.revoke_session(claims.user_id, claims.sid):
            _ended(claims, "user_inactive")
        raise TokenInvalid("User is inactive or deleted")
    now, call = sessions.rotation_call(
        request or HttpRequest(), claims, user, users.profile_json(user)
    )
    rotation = syncstore.rotate(**call)
    if rotation.outcome == "stale":
        _ended(claims, "password_changed")
        raise TokenInvalid("Password changed: log in again")
    if rotation.outcome == "reuse":
        events.emit_sync("refresh_reuse_detected", user_id=claims.user_id, session_id=claims.sid)
        _ended(claims, "reuse")
        raise TokenInvalid("Refresh token reuse detected: the session is revoked")
    if rotation.outcome not in {"ok", "same"}:
        raise TokenInvalid("Token has been revoked")
    pair = sessions.next_pair(claims, rotation, user, now)
    events.emit_sync("token_refreshed", user_id=claims.user_id, session_id=claims.sid)
    return pair


def _ended(claims: tokens.Claims, reason: str) -> None:
    events.emit_sync(
        "session_revoked", user_id=claims.user_id, session_id=claims.sid, reason=reason
    )

"""The session life cycle: log in, refresh (rotate), log out, verify, revoke.

Views call these; they speak tokens, users and the store, and raise only
``AuthApiError``s. Who the user is lives in ``users.py``, who the client is in
``client.py``, what gets announced in ``events.py``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest
from django.views.decorators.debug import sensitive_variables

from authapi import (
    accounts,
    conf,
    dpop,
    events,
    passwords,
    possession,
    store,
    throttle,
    tokens,
    users,
)
from authapi.client import client_ip, user_agent
from authapi.errors import (
    AuthenticationFailed,
    DatabaseUnavailable,
    DPoPGrantInvalid,
    DPoPInvalid,
    NotFound,
    RefreshReuse,
    StoreUnavailable,
    TokenInvalid,
)

logger = logging.getLogger("authapi")


def _pair(
    access: str, refresh: str, access_exp: int, refresh_exp: int, now: int, bound: bool = False
) -> dict[str, Any]:
    return {
        "access": access,
        "refresh": refresh,
        "token_type": "DPoP" if bound else "Bearer",
        "expires_in": max(0, access_exp - now),
        "refresh_expires_in": max(0, refresh_exp - now),
    }


async def _claim_proof(user_id: int | str, proof: dpop.Proof) -> None:
    """A proof's jti is good for one login or refresh, on every worker and instance."""
    if not await store.claim_dpop_jti(
        store.dpop_jti_key(user_id, proof.jkt, proof.jti), dpop.proof_ttl_ms()
    ):
        raise DPoPGrantInvalid("The DPoP proof was used before (its jti is spent)")


PASSWORD = ("pwd",)  # RFC 8176: how /api/auth/login authenticates


@dataclass(frozen=True)
class Opening:
    """A session about to start: the store call that starts it, and its first pair."""

    uid: int | str
    sid: str
    call: dict[str, Any]  # the arguments of store.start_session
    pair: dict[str, Any]


def opening(
    user: Any,
    request: HttpRequest,
    *,
    jkt: str | None = None,
    amr: tuple[str, ...] = PASSWORD,
    fields: dict[str, str] | None = None,
) -> Opening:
    """Plan a new session of ``user`` (bound to DPoP key ``jkt`` if given): its tokens are
    signed, but good for nothing until the store call has run. Shared by our login and
    allauth's flows (authapi.allauth), which run it on the sync client."""
    cfg = conf.get()
    moment = tokens.now()
    now, now_ms = int(moment), int(moment * 1000)
    uid, sid, jti = users.user_id_of(user), tokens.new_id(), tokens.new_id()
    max_exp = now + cfg.session_max_age
    refresh_exp = min(now + cfg.refresh_lifetime, max_exp)
    access_exp = min(now + cfg.access_lifetime, max_exp)
    call = {
        "user_id": uid,
        "sid": sid,
        "jti": jti,
        "iat": now,
        "refresh_exp": refresh_exp,
        "access_exp": access_exp,
        "max_exp": max_exp,
        "now_ms": now_ms,
        "user_agent": user_agent(request),
        "ip": client_ip(request),
        "max_sessions": cfg.max_sessions,
        "password_mark": users.password_mark(user),
        "profile": users.profile_json(user),
        "fields": {"amr": " ".join(amr), **(fields or {})},
    }
    extra = users.custom_claims(user)
    common: dict[str, Any] = {"user_id": uid, "sid": sid, "iat": now, "extra": extra, "jkt": jkt}
    access = tokens.encode(tokens.build("access", exp=access_exp, amr=amr, **common))
    refresh = tokens.encode(tokens.build("refresh", exp=refresh_exp, jti=jti, **common))
    pair = _pair(access, refresh, access_exp, refresh_exp, now, bound=jkt is not None)
    return Opening(uid, sid, call, pair)


async def start(
    user: Any,
    request: HttpRequest,
    proof: dpop.Proof | None = None,
    amr: tuple[str, ...] = PASSWORD,
) -> tuple[str, dict[str, Any]]:
    """Open a new session for ``user``, bound to the DPoP key of ``proof`` when one came;
    return its id and first token pair. The session keeps ``amr`` for its access tokens."""
    plan = opening(user, request, jkt=proof.jkt if proof is not None else None, amr=amr)
    if proof is not None:
        await _claim_proof(plan.uid, proof)
    evicted = await store.start_session(**plan.call)
    for old in evicted:
        await events.emit(
            "session_revoked", request, user_id=plan.uid, session_id=old, reason="session_limit"
        )
    return plan.sid, plan.pair


@sensitive_variables("password")
async def login(
    request: HttpRequest, username: str, password: str, proof: dpop.Proof | None = None
) -> dict[str, Any]:
    """Reserve a throttled attempt, check credentials off the loop, then start a session.

    A password change or deactivation saved while the password was being checked ends
    every session that existed then; the session started here may come just after, so
    the user's row is read again once the session exists, and the session is ended
    before any token leaves if the row moved on. Any other change saved meanwhile (an
    email) reached only the sessions that existed then: this one's snapshot, what /me
    answers, is taken from that second read.
    """
    attempt = await throttle.reserve(request, username)
    try:
        user = await users.find(username)
    except DatabaseError as exc:
        raise DatabaseUnavailable() from exc
    usable = user is not None and user.has_usable_password()
    ok, upgrade = await passwords.verify(
        password, user.password if user is not None and usable else None
    )
    if not ok or not getattr(user, "is_active", True):
        await events.emit("login_failed", request, user_id=user.pk if user else None)
        raise AuthenticationFailed()
    # The password was right, but it alone is not enough: the attempt stays counted, as a
    # failure's does, since the answer tells a guesser that the password was right.
    refusal = await accounts.password_alone_refused(user)
    if refusal is not None:
        await events.emit(
            "login_failed", request, user_id=users.user_id_of(user), reason=refusal.code
        )
        raise refusal
    if upgrade:
        old_mark = users.password_mark(user)
        await passwords.rehash(user, password)
        await store.remark_password(users.user_id_of(user), old_mark, users.password_mark(user))
    await throttle.succeeded(attempt)
    sid, pair = await start(user, request, proof)
    uid = users.user_id_of(user)
    fresh = await users.current(user)
    if fresh is None:
        await store.revoke_session(uid, sid)
        await events.emit(
            "login_failed", request, user_id=uid, session_id=sid, reason="account_changed"
        )
        raise AuthenticationFailed()
    await _catch_up(uid, sid, users.profile_json(user), fresh)
    await events.emit("login_succeeded", request, user_id=uid, session_id=sid)
    return pair


async def _catch_up(uid: int | str, sid: str, written: str, fresh: Any) -> None:
    """Give the session the snapshot of ``fresh``, read after ``written`` was: a change
    saved in between went only to the sessions that existed before this write."""
    snapshot = users.profile_json(fresh)
    if snapshot != written:
        await store.catch_up_profile(uid, sid, written, snapshot)


async def _session_ended(request: HttpRequest, claims: tokens.Claims, reason: str) -> None:
    await events.emit(
        "session_revoked", request, user_id=claims.user_id, session_id=claims.sid, reason=reason
    )


async def _refresh_failed(request: HttpRequest, claims: tokens.Claims, reason: str) -> None:
    await events.emit(
        "refresh_failed", request, user_id=claims.user_id, session_id=claims.sid, reason=reason
    )


async def refresh(request: HttpRequest, token: str) -> dict[str, Any]:
    """Spend a refresh token and return the session's next pair."""
    try:
        claims = tokens.decode(token, "refresh")
    except TokenInvalid as exc:
        await events.emit("refresh_failed", request, reason="invalid", detail=exc.message)
        raise
    if claims.jkt is not None:
        await _prove_possession(request, claims)
    user = await users.get_user(claims.user_id)
    if user is None or not user.is_active:
        if await store.revoke_session(claims.user_id, claims.sid):
            await _session_ended(request, claims, "user_inactive")
        await _refresh_failed(request, claims, "user_inactive")
        raise TokenInvalid("User is inactive or deleted")
    written = users.profile_json(user)
    now, call = rotation_call(request, claims, user, written)
    rotation = await store.rotate(**call)
    if rotation.outcome == "stale":
        await _session_ended(request, claims, "password_changed")
        raise TokenInvalid("Password changed: log in again")
    if rotation.outcome == "reuse":
        await events.emit(
            "refresh_reuse_detected", request, user_id=claims.user_id, session_id=claims.sid
        )
        await _session_ended(request, claims, "reuse")
        raise RefreshReuse()
    if rotation.outcome != "ok" and rotation.outcome != "same":
        await _refresh_failed(request, claims, "revoked")
        raise TokenInvalid("Token has been revoked")
    # A change saved between our read and our write reached the session before the write.
    # The new pair exists now: an outage here must not lose it (a retry would be reuse).
    try:
        fresh = await users.get_user(claims.user_id)
        if fresh is not None:
            await _catch_up(claims.user_id, claims.sid, written, fresh)
    except (DatabaseUnavailable, StoreUnavailable):
        logger.warning("refresh: could not re-read the user; /me shows the row as read")
    pair = next_pair(claims, rotation, user, now)
    await events.emit(
        "token_refreshed",
        request,
        user_id=claims.user_id,
        session_id=claims.sid,
        replayed=rotation.outcome == "same" or None,
    )
    return pair


def rotation_call(
    request: HttpRequest, claims: tokens.Claims, user: Any, written: str
) -> tuple[int, dict[str, Any]]:
    """The moment, and the store call that spends refresh token ``claims``: shared with
    allauth's door (authapi.allauth), so both rotate by one rule."""
    cfg = conf.get()
    moment = tokens.now()
    now = int(moment)
    return now, {
        "user_id": claims.user_id,
        "sid": claims.sid,
        "jti": claims.jti,
        "new_jti": tokens.new_id(),
        "now_ms": int(moment * 1000),
        "refresh_exp": now + cfg.refresh_lifetime,
        "access_exp": now + cfg.access_lifetime,
        "reuse_interval_ms": cfg.reuse_interval * 1000,
        "user_agent": user_agent(request),
        "ip": client_ip(request),
        "password_mark": users.password_mark(user),
        "profile": written,
    }


def next_pair(
    claims: tokens.Claims, rotation: store.Rotation, user: Any, now: int
) -> dict[str, Any]:
    """The pair a successful rotation hands out; its access token keeps the session's amr."""
    common: dict[str, Any] = {
        "user_id": claims.user_id,
        "sid": claims.sid,
        "extra": users.custom_claims(user),
        "jkt": claims.jkt,
    }
    amr = rotation.amr or PASSWORD  # a session from before amr came from our login
    access = tokens.encode(
        tokens.build("access", iat=now, exp=rotation.access_exp, amr=amr, **common)
    )
    new_refresh = tokens.encode(
        tokens.build(
            "refresh", iat=rotation.iat, exp=rotation.refresh_exp, jti=rotation.jti, **common
        )
    )
    return _pair(
        access,
        new_refresh,
        rotation.access_exp,
        rotation.refresh_exp,
        now,
        bound=claims.jkt is not None,
    )


async def _prove_possession(request: HttpRequest, claims: tokens.Claims) -> None:
    """A bound refresh token is spent only with a proof by its key; a refusal leaves it
    unspent (its owner can still refresh) and is a security event."""
    try:
        await possession.prove_grant(request, claims)
    except DPoPInvalid as exc:
        await _refresh_failed(request, claims, "dpop_proof")
        raise exc


async def logout(
    request: HttpRequest, token: str, access_token: str | None = None, *, dpop_scheme: bool = False
) -> None:
    """Revoke the refresh token's session, and the access token when one came along
    (``dpop_scheme``: as ``Authorization: DPoP``). A bound token of either acts only with
    a proof by its key for this request: DPoPInvalid (401), and nothing is revoked."""
    claims = tokens.decode(token, "refresh")
    access = _sent_access(access_token)
    if access is not None and access.jkt is None and dpop_scheme:
        access = None  # not bound, yet sent as DPoP: refused everywhere, so nothing to revoke
    if access is not None and access.jkt is not None and not dpop_scheme:
        raise DPoPInvalid("This token is DPoP-bound: send it as 'Authorization: DPoP' with a proof")
    await possession.prove(
        request, claims, access, access_token=access_token if dpop_scheme else None
    )
    if access is not None and access.sid != claims.sid:
        if await store.access_allowed(access.user_id, access.sid, access.jti):
            await store.revoke_access(access.user_id, access.sid, access.jti)
    if not await end_session(request, claims, "logout"):
        raise TokenInvalid("Token has been revoked")


def _sent_access(token: str | None) -> tokens.Claims | None:
    """The claims of an access token sent along with a logout; None for none or a bad one
    (an expired or forged access token needs no revoking)."""
    if not token:
        return None
    try:
        return tokens.decode(token, "access")
    except TokenInvalid:
        return None


async def end_session(request: HttpRequest | None, claims: tokens.Claims, reason: str) -> bool:
    """End the session of refresh token ``claims``; False when it had ended already."""
    if not await store.revoke_session(claims.user_id, claims.sid):
        return False
    await events.emit(
        "session_revoked", request, user_id=claims.user_id, session_id=claims.sid, reason=reason
    )
    return True


async def verify(request: HttpRequest, token: str) -> None:
    """Raise TokenInvalid unless ``token`` (access or refresh) is valid and not revoked; a
    bound token needs a proof by its key for this request (DPoPInvalid), checked first, so
    a copy without the key learns nothing, not even whether it was revoked."""
    claims = tokens.decode(token, ("access", "refresh"))
    access = claims.token_type == "access"
    await possession.prove(request, claims, access_token=token if access else None)
    if access:
        alive = await store.access_allowed(claims.user_id, claims.sid, claims.jti)
    else:
        alive = await store.refresh_is_current(claims.user_id, claims.sid, claims.jti)
    if not alive:
        raise TokenInvalid("Token has been revoked")


async def revoke_one(
    request: HttpRequest | None, user_id: int | str, sid: str, reason: str
) -> None:
    """End one session of ``user_id``; NotFound when it is not theirs or not alive."""
    if not await store.revoke_session(user_id, sid):
        raise NotFound("No such session.")
    await events.emit("session_revoked", request, user_id=user_id, session_id=sid, reason=reason)


async def revoke_all(request: HttpRequest | None, user_id: int | str, reason: str) -> int:
    """End every session of ``user_id``, access tokens included."""
    count = await store.revoke_user(user_id)
    await events.emit(
        "user_sessions_revoked", request, user_id=user_id, reason=reason, sessions=count
    )
    return count

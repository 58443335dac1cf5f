"""The kit's memory of introspection answers (RFC 7662), and the claims one gives.

* An ``active`` answer is reused for at most ``INTROSPECTION_CACHE_SECONDS`` (0: never),
  and never past the token's own ``exp``.
* An inactive answer for any token of a session drops every cached answer of that session
  at once: a revocation the auth service reported is never outlived here.
* An inactive answer is kept until the token's ``exp`` when that is known from a locally
  verified signature (a revoked token never comes back); never on an unverified word.

Keys are SHA-256 digests of the tokens: the tokens themselves are not kept.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from authapi import tokens
from authapi.errors import StoreUnavailable, TokenInvalid

_KINDS = ("access", "refresh")
# Where an auth service names the access/refresh kind when ``token_type`` is the
# scheme (RFC 7662 §2.2: "Bearer" / "DPoP").
_KIND_MEMBERS = ("authapi_token_kind", "token_kind", "token_use")

Session = tuple[str, str]  # (user id as text, sid)


@dataclass(frozen=True)
class Answer:
    body: dict[str, Any] | None  # None: not active
    until: float  # time.monotonic()
    session: Session | None


class Answers:
    """Bounded: at ``limit`` entries the expired go, then (a flood) everything."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._by_token: dict[str, Answer] = {}
        self._by_session: dict[Session, set[str]] = {}

    def get(self, token: str) -> Answer | None:
        key = _digest(token)
        answer = self._by_token.get(key)
        if answer is None:
            return None
        if answer.until <= time.monotonic():
            self._forget(key)
            return None
        return answer

    def put(self, token: str, body: dict[str, Any] | None, *, cache: int, exp: int | None) -> None:
        """Remember the auth service's answer for ``token``; ``exp`` only from a locally
        verified signature."""
        session = _session_of(body) if body is not None else _claimed_session(token)
        if body is None and session is not None:
            self.revoked(session)
        left = _seconds_left(body, exp)
        life = min(cache, left) if body is not None else (left if exp is not None else 0)
        if life <= 0:
            return
        if len(self._by_token) >= self.limit:
            self._sweep()
        key = _digest(token)
        self._forget(key)
        self._by_token[key] = Answer(body, time.monotonic() + life, session)
        if session is not None:
            self._by_session.setdefault(session, set()).add(key)

    def revoked(self, session: Session) -> None:
        """Nothing of ``session`` is answered from memory from now on."""
        for key in self._by_session.pop(session, set()):
            self._by_token.pop(key, None)

    def __len__(self) -> int:
        return len(self._by_token)

    def _forget(self, key: str) -> None:
        answer = self._by_token.pop(key, None)
        if answer is not None and answer.session is not None:
            keys = self._by_session.get(answer.session)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_session[answer.session]

    def _sweep(self) -> None:
        now = time.monotonic()
        for key in [k for k, a in self._by_token.items() if a.until <= now]:
            self._forget(key)
        if len(self._by_token) >= self.limit:
            self._by_token.clear()
            self._by_session.clear()


def claims_of(
    body: dict[str, Any], *, issuer: str | None, audience: Sequence[str]
) -> tokens.Claims:
    """The claims of a live access token from its introspection answer (no key material
    here); TokenInvalid for another kind, issuer or audience, StoreUnavailable for an
    answer that lacks what every live token has."""
    if kind_of(body) != "access":
        raise TokenInvalid("Token has wrong type")
    user_id, sid, jti = body.get("user_id"), body.get("sid"), body.get("jti")
    iat, exp = body.get("iat"), body.get("exp")
    shaped = (
        isinstance(user_id, (int, str))
        and not isinstance(user_id, bool)
        and all(isinstance(v, str) and v for v in (sid, jti))
        and all(isinstance(v, int) and not isinstance(v, bool) for v in (iat, exp))
    )
    if not shaped:
        raise StoreUnavailable("The auth service's introspection answered nonsense.")
    if issuer is not None and body.get("iss") != issuer:
        raise TokenInvalid("Token has wrong issuer")
    if audience:
        given = body.get("aud")
        names = [given] if isinstance(given, str) else given if isinstance(given, list) else []
        if not set(audience) & set(names):
            raise TokenInvalid("Token has wrong audience")
    payload = {k: v for k, v in body.items() if k not in ("active", "token_type")}
    payload["token_type"] = "access"
    return tokens.Claims(
        token_type="access", jti=jti, sid=sid, user_id=user_id, iat=iat, exp=exp,  # type: ignore[arg-type]
        payload=payload,
    )  # fmt: skip


def kind_of(body: dict[str, Any]) -> str | None:
    """``access`` or ``refresh``: ``token_type`` of an older auth service, else the member
    that names the kind beside RFC 7662's scheme."""
    given = body.get("token_type")
    if given in _KINDS:
        return str(given)
    for member in _KIND_MEMBERS:
        if body.get(member) in _KINDS:
            return str(body[member])
    return None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _session_of(body: dict[str, Any]) -> Session | None:
    user_id, sid = body.get("user_id"), body.get("sid")
    if isinstance(user_id, (int, str)) and isinstance(sid, str):
        return (str(user_id), sid)
    return None


def _claimed_session(token: str) -> Session | None:
    """The session an inactive token names, unverified: at worst a forged one makes this
    kit ask the auth service again about a live session (never the reverse)."""
    try:
        tokens.unverified_header(token)  # the compact form, or TokenInvalid
        payload = jwt.decode(token, options={"verify_signature": False})
    except (TokenInvalid, jwt.InvalidTokenError):
        return None
    return _session_of(payload) if isinstance(payload, dict) else None


def _seconds_left(body: dict[str, Any] | None, exp: int | None) -> float:
    ends = body.get("exp") if body is not None else None
    if not isinstance(ends, int) or isinstance(ends, bool):
        ends = exp
    if ends is None:
        return 0.0
    return float(min(ends, exp) if exp is not None else ends) - tokens.now()

"""Encode and decode our JWTs with PyJWT: pinned algorithm, required claims, one type each.

``jwt.InvalidTokenError`` stops here: anything wrong with a presented token becomes
``TokenInvalid``. Time comes from :func:`now`, the seam tests move.

Access tokens have RFC 9068's shape: header ``typ: at+jwt`` and claim ``sub`` (the user id
as text) beside ``user_id``. Refresh tokens keep ``typ: JWT``. Access tokens signed before
that shape (``typ`` ``JWT`` or absent, no ``sub``) are still accepted for their remaining
life; a token whose header says ``at+jwt`` is an access token or nothing.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from authapi import conf, keys
from authapi.errors import TokenInvalid

TokenType = Literal["access", "refresh"]
REQUIRED = ("token_type", "exp", "iat", "jti", "user_id", "sid")
RESERVED = frozenset({*REQUIRED, "iss", "aud", "nbf", "sub", "cnf", "amr"})
MAX_TOKEN_LENGTH = 8192
MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z, the last second a datetime can hold
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")  # no "=" padding
_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")  # fullmatch: "$" would let a final "\n" through
ACCESS_TYP = "at+jwt"
# RFC 9068 4: "at+jwt" or its media type spelling; RFC 7515 4.1.9: compared case-insensitively.
_ACCESS_TYPS = frozenset({"at+jwt", "application/at+jwt"})
_LEGACY_TYPS = frozenset({None, "jwt"})  # PyJWT's default header, or none at all


def now() -> float:
    """Seconds since the epoch; tests replace ``tokens.clock`` to move time."""
    return clock()


clock = time.time


def new_id() -> str:
    """A fresh unguessable identifier for a jti or a session id."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True)
class Claims:
    token_type: TokenType
    jti: str
    sid: str
    user_id: int | str
    iat: int
    exp: int
    payload: dict[str, Any]

    @property
    def jkt(self) -> str | None:
        """The DPoP key thumbprint the token is bound to (``cnf.jkt``), if any."""
        cnf = self.payload.get("cnf")
        jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
        return jkt if isinstance(jkt, str) else None


def encode(payload: dict[str, Any]) -> str:
    """Sign a payload with the current key; the header names the key by ``kid``, and says
    ``typ: at+jwt`` for an access token (RFC 9068)."""
    key = keys.get().current
    headers = {"kid": key.kid}
    if payload.get("token_type") == "access":
        headers["typ"] = ACCESS_TYP
    return jwt.encode(payload, key.signing, algorithm=key.algorithm, headers=headers)


def build(
    token_type: TokenType,
    *,
    user_id: int | str,
    sid: str,
    iat: int,
    exp: int,
    jti: str | None = None,
    extra: dict[str, Any] | None = None,
    jkt: str | None = None,
    amr: tuple[str, ...] | list[str] = (),
) -> dict[str, Any]:
    """The payload of a new token; ``extra`` (custom claims) never overrides ours. An
    access token says how its session's user authenticated (``amr``, RFC 8176)."""
    cfg = conf.get()
    payload: dict[str, Any] = dict(extra or {})
    payload.update(
        token_type=token_type,
        exp=exp,
        iat=iat,
        jti=jti or new_id(),
        user_id=user_id,
        sid=sid,
    )
    if token_type == "access":
        payload["sub"] = str(user_id)  # RFC 9068 2.2
        if amr:
            payload["amr"] = list(amr)
    if jkt:
        payload["cnf"] = {"jkt": jkt}  # RFC 9449 §6.1: bound to the client's DPoP key
    if cfg.issuer:
        payload["iss"] = cfg.issuer
    if cfg.audience:
        payload["aud"] = cfg.audience[0] if len(cfg.audience) == 1 else list(cfg.audience)
    return payload


def _time_claim(payload: dict[str, Any], name: str) -> int:
    value = payload[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenInvalid(f"Token claim '{name}' must be a number")
    if not 0 <= value <= MAX_TIME:  # also NaN, which compares false to everything
        raise TokenInvalid(f"Token claim '{name}' is out of range")
    return int(value)


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def decode(token: Any, expected: TokenType | tuple[TokenType, ...]) -> Claims:
    """Verify signature and claims; refuse any token not of an ``expected`` type."""
    cfg = conf.get()
    return verify(
        token,
        expected,
        keys.get().by_kid.get,
        issuer=cfg.issuer,
        audience=cfg.audience,
        leeway=cfg.leeway,
    )


def unverified_header(token: Any) -> dict[str, Any]:
    """A compact token's header, nothing verified; TokenInvalid for anything else."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not _COMPACT.fullmatch(token):
        raise TokenInvalid("Token is malformed")  # one spelling only (RFC 7515 compact form)
    try:
        return jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise TokenInvalid("Token is malformed") from None


def unverified_kid(token: Any) -> str | None:
    """The ``kid`` a compact token's header names (nothing verified); None if none."""
    kid = unverified_header(token).get("kid")
    return kid if isinstance(kid, str) else None


def verify(
    token: Any,
    expected: TokenType | tuple[TokenType, ...],
    lookup: Callable[[str], keys.Key | None],
    *,
    issuer: str | None,
    audience: tuple[str, ...],
    leeway: int,
) -> Claims:
    """The whole check of a token against the keys ``lookup`` finds by ``kid``: what the
    service decides, and what :mod:`authapi.resource` decides with keys from the JWKS."""
    header = unverified_header(token)
    kid = header.get("kid")
    key = lookup(kid) if isinstance(kid, str) else None
    if key is None:
        raise TokenInvalid("Token is signed by an unknown key")
    require = [*REQUIRED, *(["iss"] if issuer else []), *(["aud"] if audience else [])]
    try:
        payload = jwt.decode(
            token,
            key.verifying,
            algorithms=[key.algorithm],
            audience=list(audience) or None,
            issuer=issuer,
            leeway=leeway,  # for nbf; exp and iat are checked below, against now()
            options={"require": require, "verify_exp": False, "verify_iat": False},
        )
    except jwt.InvalidTokenError as exc:
        raise TokenInvalid(_reason(exc)) from None
    token_type = payload["token_type"]
    kinds = (expected,) if isinstance(expected, str) else expected
    if token_type not in kinds:
        raise TokenInvalid("Token has wrong type")
    check_shape(header, payload)
    exp, iat = _time_claim(payload, "exp"), _time_claim(payload, "iat")
    moment = now()
    if exp <= moment - leeway:
        raise TokenInvalid("Token is expired")
    if iat > moment + leeway:
        raise TokenInvalid("Token is not yet valid (iat)")
    jti, sid, user_id = payload["jti"], payload["sid"], payload["user_id"]
    if not (_is_id(jti) and _is_id(sid)):
        raise TokenInvalid("Token has a malformed jti or sid")
    if isinstance(user_id, bool) or not isinstance(user_id, int | str) or user_id == "":
        raise TokenInvalid("Token has a malformed user_id")
    return Claims(token_type, jti, sid, user_id, iat, exp, payload)


def check_shape(header: dict[str, Any], payload: dict[str, Any]) -> None:
    """RFC 9068's shape, as far as it tells the two kinds apart: ``typ: at+jwt`` only on an
    access token; ``sub``, when present (always, on an ``at+jwt`` token), names ``user_id``.

    An access token with a legacy ``typ`` (``JWT`` or none) and no ``sub`` passes: tokens
    issued before the upgrade live out their lifetime. Any other ``typ`` is refused.
    """
    typ = header.get("typ")
    if typ is not None and not isinstance(typ, str):
        raise TokenInvalid("Token has a malformed typ header")
    kind = typ.lower() if typ is not None else None
    if kind in _ACCESS_TYPS:
        if payload.get("token_type") != "access":
            raise TokenInvalid("Token has wrong type")
        if "sub" not in payload:
            raise TokenInvalid("Token lacks the 'sub' claim")
    elif kind not in _LEGACY_TYPS:
        raise TokenInvalid("Token has wrong type")
    if "sub" in payload:
        user_id = payload.get("user_id")
        if isinstance(user_id, bool) or payload["sub"] != str(user_id):
            raise TokenInvalid("Token claim 'sub' does not name its user_id")


def _reason(exc: jwt.InvalidTokenError) -> str:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"Token lacks the '{exc.claim}' claim"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "Token signature is invalid"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "Token audience is not accepted"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "Token issuer is not accepted"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "Token is not yet valid (nbf)"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "Token algorithm is not accepted"
    return "Token is malformed"

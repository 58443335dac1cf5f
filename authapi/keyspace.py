"""The store's key layout and the access decision, as pure functions (no client, no
settings, no side effect on import): :mod:`authapi.store` and the resource servers' kit
(:mod:`authapi.resource`) both use these, so both name the same keys and decide alike.

See ``store.py`` for what each key holds.
"""

from __future__ import annotations

import hashlib
from typing import Any


def user_prefix(user_id: int | str) -> str:
    return f"authapi:{{u{user_id}}}:"


def session_key(user_id: int | str, sid: str) -> str:
    return f"{user_prefix(user_id)}s:{sid}"


def index_key(user_id: int | str) -> str:
    return f"{user_prefix(user_id)}sessions"


def dpop_jti_key(user_id: int | str, jkt: str, jti: str) -> str:
    """Where a DPoP proof's jti is claimed: under the user's hash tag, beside the session,
    so the claim and the revocation read go to one node in one round trip."""
    digest = hashlib.sha256(f"{jkt}:{jti}".encode()).hexdigest()[:32]
    return f"{user_prefix(user_id)}dp:{digest}"


def access_fields(jti: str) -> list[str]:
    """The fields of the session hash whose one HMGET decides an access token."""
    return ["uid", f"rj:{jti}"]


def access_verdict(user_id: int | str, uid: Any, revoked: Any) -> bool:
    """Allowed: the session lives, belongs to the token's user, and its jti is not revoked."""
    return uid == str(user_id) and revoked is None

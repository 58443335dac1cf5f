"""Users as the token service sees them: the ``user_id`` claim, lookups, the password
mark a session remembers, and the project's custom claims.

``DatabaseError`` stops here for lookups: it becomes ``DatabaseUnavailable`` (503).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError
from django.utils.module_loading import import_string

from authapi import conf, tokens
from authapi.errors import DatabaseUnavailable

logger = logging.getLogger("authapi")


@cache
def _claims_callable() -> Callable[[Any], dict[str, Any]] | None:
    path = conf.get().custom_claims
    if not path:
        return None
    try:
        func: Callable[[Any], dict[str, Any]] = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"AUTHAPI_CUSTOM_CLAIMS: cannot import {path!r}.") from exc
    return func


conf.on_reset(_claims_callable.cache_clear)


def custom_claims(user: Any) -> dict[str, Any]:
    """The configured extra claims for ``user``; reserved names are dropped, loudly."""
    func = _claims_callable()
    if func is None:
        return {}
    claims = func(user)
    if not isinstance(claims, dict):
        logger.error(
            "AUTHAPI_CUSTOM_CLAIMS returned %s, not a dict; ignored", type(claims).__name__
        )
        return {}
    clash = sorted(set(claims) & tokens.RESERVED)
    if clash:
        logger.error("AUTHAPI_CUSTOM_CLAIMS may not set reserved claims %s; dropped", clash)
        claims = {k: v for k, v in claims.items() if k not in tokens.RESERVED}
    try:
        json.dumps(claims)
    except (TypeError, ValueError):
        logger.error("AUTHAPI_CUSTOM_CLAIMS returned claims that are not JSON; ignored")
        return {}
    return claims


def id_claim(pk: Any) -> int | str:
    """The ``user_id`` claim of a primary key: kept an int when it is one (as simplejwt)."""
    return pk if isinstance(pk, int) else str(pk)


def user_id_of(user: Any) -> int | str:
    """The ``user_id`` claim of ``user``."""
    return id_claim(user.pk)


async def get_user(user_id: int | str) -> Any | None:
    """The user for a ``user_id`` claim, or None when deleted."""
    model = get_user_model()
    try:
        return await model._default_manager.filter(pk=user_id).afirst()
    except (ValueError, TypeError):
        return None
    except DatabaseError as exc:
        raise DatabaseUnavailable() from exc


def password_mark(user: Any) -> str:
    """A digest of the user's password hash: changes whenever the password does.

    Not keyed with SECRET_KEY, so rotating that key does not end every session; the hash
    it digests carries a random salt, so the digest tells a reader of Redis nothing.
    """
    digest = hashlib.sha256(b"authapi.password-mark\x00" + (user.password or "").encode())
    return digest.hexdigest()[:24]


async def find(username: str) -> Any | None:
    """The user with that username (the model's USERNAME_FIELD), else the one user whose
    email address it is (accounts made by signup have a generated username), or None."""
    model = get_user_model()
    try:
        try:
            return await model._default_manager.aget_by_natural_key(username)
        except model.DoesNotExist:
            pass
        if "@" not in username or "email" not in {f.name for f in model._meta.fields}:
            return None
        found = [u async for u in model._default_manager.filter(email__iexact=username)[:2]]
        return found[0] if len(found) == 1 else None  # an address two accounts share: none
    except DatabaseError as exc:
        raise DatabaseUnavailable() from exc


async def current(user: Any) -> Any | None:
    """``user``'s row as the database has it now, if its password hash and active flag are
    still what the login checked; else None (changed, deactivated or deleted)."""
    fresh = await get_user(user_id_of(user))
    if fresh is None or fresh.password != user.password:
        return None
    return fresh if getattr(fresh, "is_active", True) else None


PROFILE_FIELDS = ("email", "first_name", "last_name")
PROFILE_KEYS = frozenset({"id", "username", *PROFILE_FIELDS})  # what profile() holds


def profile(user: Any) -> dict[str, Any]:
    """What ``/me`` shows: kept in each session, so ``/me`` needs no query."""
    fields = {name: str(getattr(user, name, "") or "") for name in PROFILE_FIELDS}
    return {"id": user.pk, "username": user.get_username(), **fields}


def profile_json(user: Any) -> str:
    """The snapshot as kept in the session: byte for byte the body ``/me`` sends (Ninja's
    JSON spelling), so ``/me`` sends it as it is."""
    return json.dumps(profile(user), default=str)

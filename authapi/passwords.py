"""Credential checks off the event loop, on a pool as wide as the machine.

PBKDF2 (and argon2/bcrypt) release the GIL while hashing, so a thread per core lets
concurrent logins use every core while the loop keeps serving. Unknown users cost the
same hashing work as known ones.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

from django.contrib.auth.hashers import (
    check_password,
    get_hasher,
    identify_hasher,
    make_password,
)
from django.views.decorators.debug import sensitive_variables


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="authapi-hash")


@cache
def _dummy_hash() -> str:
    return make_password("authapi timing equaliser")


@sensitive_variables("password")
def _verify(password: str, encoded: str | None) -> tuple[bool, bool]:
    if not encoded:
        check_password(password, _dummy_hash())
        return False, False
    ok = check_password(password, encoded)
    if not ok:
        return False, False
    # As Django's own check_password(setter=...): upgrade when the preferred hasher differs
    # or wants more work.
    preferred = get_hasher("default")
    try:
        upgrade = identify_hasher(encoded).algorithm != preferred.algorithm
    except ValueError:
        upgrade = False
    upgrade = upgrade or preferred.must_update(encoded)
    return ok, upgrade


@sensitive_variables("password")
async def verify(password: str, encoded: str | None) -> tuple[bool, bool]:
    """(matches, hash should be upgraded), computed on the hashing pool."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(), _verify, password, encoded)


@sensitive_variables("password")
async def rehash(user: Any, password: str) -> None:
    """Store a fresh hash of the same password (hasher upgrade); not a password change."""
    loop = asyncio.get_running_loop()
    user.password = await loop.run_in_executor(_pool(), make_password, password)
    user._authapi_rehash = True  # the password-change receiver skips this save
    try:
        await user.asave(update_fields=["password"])
    finally:
        user._authapi_rehash = False

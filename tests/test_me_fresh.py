"""``/me`` is never stale: an email saved while a login checks the password, or while a
refresh sits between reading the user and writing the session, shows on the next ``/me``.

The races are made on purpose: the login is held inside the password check (a hasher with
a gate, as the password-race tests do); the refresh when it takes the time for its new
tokens, after it read the user and before it writes the session (the clock is the seam).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import override_settings

from authapi import sessions, tokens
from tests import hashers
from tests.conftest import PASSWORD, bearer, login

GATED = ["tests.hashers.GateHasher", "django.contrib.auth.hashers.MD5PasswordHasher"]


def _set_email(user, email: str) -> None:
    fresh = get_user_model().objects.get(pk=user.pk)
    fresh.email = email
    fresh.save()


async def _me(client, access: str) -> dict:
    response = await client.get("/api/auth/me", headers=bearer(access))
    assert response.status_code == 200, response.text
    return response.json()


async def test_an_email_saved_during_the_password_check_shows_on_the_next_me(client, make_user):
    with override_settings(PASSWORD_HASHERS=GATED):
        user = await make_user(email="old@example.com")
        hashers.GateHasher.entered.clear()
        hashers.GateHasher.gate.clear()
        racing = asyncio.ensure_future(
            client.post("/api/auth/login", json={"username": user.username, "password": PASSWORD})
        )
        try:
            assert await asyncio.to_thread(hashers.GateHasher.entered.wait, 10)
            # the row was read before the check: change it while the check runs
            await sync_to_async(_set_email)(user, "new@example.com")
        finally:
            hashers.GateHasher.gate.set()
        response = await racing
    assert response.status_code == 200, response.text
    assert (await _me(client, response.json()["access"]))["email"] == "new@example.com"


class _HeldClock:
    """The clock, holding the refresh of this test when it asks the time after reading the
    user: ``during`` runs (on another thread, as another request would) before it goes on."""

    def __init__(self, during) -> None:
        self.during = during
        self.held = 0

    def __call__(self) -> float:
        caller = sys._getframe(2).f_code  # tokens.now() <- the caller
        if caller is _REFRESH_CODE and not self.held:
            self.held += 1
            thread = threading.Thread(target=self._run)
            thread.start()
            thread.join(timeout=10)  # the loop waits here, between the read and the write
        return time.time()

    def _run(self) -> None:
        try:
            self.during()
        finally:
            connections.close_all()  # this thread's own, which nothing else would close


_REFRESH_CODE = sessions.rotation_call.__code__  # asks the time after reading the user


async def test_an_email_saved_between_a_refreshs_read_and_write_shows_on_the_next_me(
    client, make_user
):
    user = await make_user(email="before@example.com")
    pair = await login(client, user)
    clock = _HeldClock(lambda: _set_email(user, "during@example.com"))
    original, tokens.clock = tokens.clock, clock
    try:
        turned = await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
    finally:
        tokens.clock = original
    assert clock.held == 1  # the race did happen where it was meant to
    assert turned.status_code == 200, turned.text
    assert (await _me(client, turned.json()["access"]))["email"] == "during@example.com"
    # and a change after that shows too, as before
    await sync_to_async(_set_email)(user, "after@example.com")
    assert (await _me(client, turned.json()["access"]))["email"] == "after@example.com"


async def test_a_session_catches_up_only_with_what_it_wrote(client, make_user):
    """The catch-up is a compare-and-set: a newer snapshot written meanwhile stays."""
    from authapi import store, users

    user = await make_user(email="a@example.com")
    pair = await login(client, user)
    sid = tokens.decode(pair["access"], "access").sid
    uid = users.user_id_of(user)
    newest = '{"id": 0, "username": "newest"}'
    await store.update_profile(uid, newest)
    assert not await store.catch_up_profile(uid, sid, "what it wrote", '{"stale": true}')
    assert (await _me(client, pair["access"]))["username"] == "newest"
    assert await store.catch_up_profile(uid, sid, newest, users.profile_json(user))
    assert (await _me(client, pair["access"]))["email"] == "a@example.com"


def _rename_users_table(old: str, new: str) -> None:
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {old} RENAME TO {new}")
    finally:
        connection.close()


async def test_a_database_failing_after_the_rotation_does_not_lose_the_new_pair(client, make_user):
    """The re-read comes after the session moved to the new pair: failing the refresh then
    would leave the client with a spent token, and its retry would look like reuse."""
    user = await make_user()
    pair = await login(client, user)
    table = get_user_model()._meta.db_table
    clock = _HeldClock(lambda: _rename_users_table(table, f"{table}_away"))
    original, tokens.clock = tokens.clock, clock
    try:
        turned = await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
    finally:
        tokens.clock = original
        await asyncio.to_thread(_rename_users_table, f"{table}_away", table)
    assert clock.held == 1
    assert turned.status_code == 200, turned.text
    again = await client.post("/api/auth/refresh", json={"refresh": turned.json()["refresh"]})
    assert again.status_code == 200, again.text

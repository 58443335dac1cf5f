"""Credentials are checked on the hashing pool, never on the event loop; upgrades are quiet."""

from __future__ import annotations

import threading

from asgiref.sync import sync_to_async
from django.contrib.auth.hashers import make_password
from django.test import override_settings

from tests import hashers
from tests.conftest import PASSWORD, bearer, login

RECORDING = ["tests.hashers.RecordingHasher", "django.contrib.auth.hashers.MD5PasswordHasher"]


async def test_password_is_checked_off_the_event_loop(client, make_user):
    with override_settings(PASSWORD_HASHERS=RECORDING):
        user = await make_user()
        hashers.threads.clear()
        await login(client, user)
        bad = await client.post(
            "/api/auth/login", json={"username": user.username, "password": "nope"}
        )
    assert bad.status_code == 401
    loop_thread = threading.current_thread().name
    assert len(hashers.threads) == 2
    assert all(name.startswith("authapi-hash") for name in hashers.threads)
    assert loop_thread not in hashers.threads


async def test_unknown_user_costs_a_hash_too(client):
    from authapi import passwords

    with override_settings(PASSWORD_HASHERS=RECORDING):
        passwords._dummy_hash.cache_clear()  # made with whichever hasher came first
        hashers.threads.clear()
        response = await client.post(
            "/api/auth/login", json={"username": "ghost-user", "password": "whatever"}
        )
    passwords._dummy_hash.cache_clear()
    assert response.status_code == 401
    assert len(hashers.threads) == 1


async def test_outdated_hash_is_upgraded_without_ending_sessions(client, make_user):
    user = await make_user()
    first = await login(client, user)
    old = await sync_to_async(make_password)(PASSWORD, hasher="pbkdf2_sha256")

    def downgrade():
        type(user).objects.filter(pk=user.pk).update(password=old)  # no signals

    await sync_to_async(downgrade)()
    # MD5 is the preferred hasher in the test settings: PBKDF2 hashes must_update.
    await login(client, user)
    await sync_to_async(user.refresh_from_db)()
    assert user.password.startswith("md5$")
    still = await client.get("/api/auth/me", headers=bearer(first["access"]))
    assert still.status_code == 200


async def test_default_pbkdf2_hasher_logs_in(client, make_user):
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.PBKDF2PasswordHasher"]):
        user = await make_user()
        pair = await login(client, user)
    assert pair["access"]

"""Credentials are checked on the hashing pool, never on the event loop; upgrades are quiet."""

from __future__ import annotations

import threading

from asgiref.sync import sync_to_async
from django.test import override_settings

from tests import hashers
from tests.conftest import bearer, login

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
    pbkdf2_first = ["django.contrib.auth.hashers.PBKDF2PasswordHasher", *RECORDING[1:]]
    with override_settings(PASSWORD_HASHERS=pbkdf2_first):
        user = await make_user()
        first = await login(client, user)  # a session opened under the PBKDF2 hash
    # back to the test settings, where MD5 is preferred: PBKDF2 hashes must be upgraded
    await login(client, user)
    await sync_to_async(user.refresh_from_db)()
    assert user.password.startswith("md5$")
    still = await client.get("/api/auth/me", headers=bearer(first["access"]))
    assert still.status_code == 200
    # the upgrade is not a password change: the older session still refreshes
    refreshed = await client.post("/api/auth/refresh", json={"refresh": first["refresh"]})
    assert refreshed.status_code == 200, refreshed.text


async def test_default_pbkdf2_hasher_logs_in(client, make_user):
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.PBKDF2PasswordHasher"]):
        user = await make_user()
        pair = await login(client, user)
    assert pair["access"]

"""Idle limit, absolute cap, session cap, reuse interval, and keys that expire by themselves."""

from __future__ import annotations

import asyncio
import os
import time

import jwt
import pytest
import redis.asyncio as aioredis

from authapi import store
from tests.conftest import alive, bearer, login


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


async def _refresh(client, token: str):
    return await client.post("/api/auth/refresh", json={"refresh": token})


@pytest.fixture
async def redis_client():
    client = aioredis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    yield client
    await client.aclose()


async def test_login_reports_the_configured_lifetimes(client, user, authapi_settings):
    with authapi_settings(ACCESS_TOKEN_LIFETIME=60, REFRESH_TOKEN_LIFETIME=3600):
        pair = await login(client, user)
    assert pair["expires_in"] == 60 and pair["refresh_expires_in"] == 3600
    access, refresh = _claims(pair["access"]), _claims(pair["refresh"])
    assert access["exp"] - access["iat"] == 60
    assert refresh["exp"] - refresh["iat"] == 3600


async def test_refresh_lifetime_is_an_idle_limit_renewed_by_each_refresh(
    client, user, clock, authapi_settings
):
    with authapi_settings(REFRESH_TOKEN_LIFETIME=100, ACCESS_TOKEN_LIFETIME=10):
        pair = await login(client, user)
        for _ in range(3):  # 3 x 80 s: longer than one lifetime, never idle for one
            clock.shift(80)
            response = await _refresh(client, pair["refresh"])
            assert response.status_code == 200, response.text
            pair = response.json()
            assert pair["refresh_expires_in"] == 100
        clock.shift(101)  # idle past the limit
        response = await _refresh(client, pair["refresh"])
        assert response.status_code == 401
        assert response.json()["detail"] == "Token is expired"


async def test_absolute_cap_is_never_extended_by_rotation(client, user, clock, authapi_settings):
    with authapi_settings(
        SESSION_MAX_AGE=200, REFRESH_TOKEN_LIFETIME=100, ACCESS_TOKEN_LIFETIME=50
    ):
        pair = await login(client, user)
        start = _claims(pair["refresh"])["iat"]
        for _ in range(4):
            clock.shift(60)
            response = await _refresh(client, pair["refresh"])
            if response.status_code != 200:
                break
            pair = response.json()
            refresh, access = _claims(pair["refresh"]), _claims(pair["access"])
            assert refresh["exp"] <= start + 200
            assert access["exp"] <= start + 200
            assert pair["refresh_expires_in"] <= start + 200 - int(clock())
        # 240 s after login the session is over, however often it was refreshed
        assert clock() - start >= 200
        assert response.status_code == 401


async def test_session_key_ttl_follows_the_cap(client, user, redis_client, authapi_settings):
    with authapi_settings(SESSION_MAX_AGE=120, REFRESH_TOKEN_LIFETIME=3600):
        pair = await login(client, user)
        claims = _claims(pair["refresh"])
        ttl = await redis_client.pttl(store.session_key(claims["user_id"], claims["sid"]))
        assert 0 < ttl <= 120_000
        index_ttl = await redis_client.pttl(store.index_key(claims["user_id"]))
        assert 0 < index_ttl <= 120_000


async def test_login_past_the_cap_evicts_the_oldest_session(client, user, authapi_settings):
    events = []
    from authapi.events import session_revoked

    def receiver(sender, **fields):
        events.append(fields)

    session_revoked.connect(receiver)
    try:
        with authapi_settings(MAX_SESSIONS_PER_USER=3):
            pairs = [await login(client, user) for _ in range(4)]
            listed = await client.get("/api/auth/sessions", headers=bearer(pairs[-1]["access"]))
    finally:
        session_revoked.disconnect(receiver)
    assert [s["id"] for s in listed.json()] == [_claims(p["access"])["sid"] for p in pairs[1:]]
    assert not await alive(client, pairs[0]["access"])
    assert (await _refresh(client, pairs[0]["refresh"])).status_code == 401
    for pair in pairs[1:]:
        assert await alive(client, pair["access"])
    assert [(e["reason"], e["session_id"]) for e in events] == [
        ("session_limit", _claims(pairs[0]["access"])["sid"])
    ]


async def test_every_key_expires_by_itself(client, make_user, redis_client, authapi_settings):
    """Short lifetimes, real waiting (about 4 s): nothing of the user is left in Redis.
    (3 s, not 1: on a loaded machine the eight requests below can take over a second.)"""
    user = await make_user()
    with authapi_settings(ACCESS_TOKEN_LIFETIME=3, REFRESH_TOKEN_LIFETIME=3, SESSION_MAX_AGE=3):
        pairs = [await login(client, user) for _ in range(5)]
        await _refresh(client, pairs[0]["refresh"])
        second = await login(client, user)
        await client.post(
            "/api/auth/logout",
            json={"refresh": second["refresh"]},
            headers=bearer(second["access"]),
        )
    pattern = f"authapi:{{u{user.pk}}}:*"
    keys = await redis_client.keys(pattern)
    assert keys, "the sessions should exist before they expire"
    assert all([await redis_client.pttl(k) > 0 for k in keys]), "a key without a TTL"
    used = sum([await redis_client.memory_usage(k) or 0 for k in keys])
    assert used > 0
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and await redis_client.keys(pattern):
        await asyncio.sleep(0.2)
    assert await redis_client.keys(pattern) == []
    # EXISTS expires what is due (valkey's MEMORY USAGE alone does not); then nothing is left
    assert await redis_client.exists(*keys) == 0
    for key in keys:
        assert await redis_client.memory_usage(key) is None


async def test_throttle_keys_expire_too(client, user, redis_client, authapi_settings):
    with authapi_settings(LOGIN_RATE_PER_IP="60/min"):  # both counters: per pair and per IP
        await client.post("/api/auth/login", json={"username": user.username, "password": "wrong"})
    keys = await redis_client.keys("authapi:{t*")
    assert len(keys) >= 2
    assert all([await redis_client.pttl(k) > 0 for k in keys])


# --- the reuse interval ----------------------------------------------------------------


async def test_parent_replay_inside_the_interval_returns_the_same_successor(
    client, user, authapi_settings
):
    with authapi_settings(REFRESH_REUSE_INTERVAL=10):
        parent = await login(client, user)
        first = await _refresh(client, parent["refresh"])
        replay = await _refresh(client, parent["refresh"])
    assert first.status_code == replay.status_code == 200
    a, b = first.json(), replay.json()
    assert _claims(a["refresh"])["jti"] == _claims(b["refresh"])["jti"]
    assert _claims(a["refresh"])["sid"] == _claims(b["refresh"])["sid"]
    # no second branch: the successor still works once, both access tokens work
    assert await alive(client, a["access"]) and await alive(client, b["access"])
    with authapi_settings(REFRESH_REUSE_INTERVAL=10):
        assert (await _refresh(client, b["refresh"])).status_code == 200


async def test_concurrent_refreshes_inside_the_interval_all_get_the_same_successor(
    client, user, authapi_settings
):
    with authapi_settings(REFRESH_REUSE_INTERVAL=10):
        pair = await login(client, user)
        responses = await asyncio.gather(*[_refresh(client, pair["refresh"]) for _ in range(10)])
    assert [r.status_code for r in responses] == [200] * 10
    assert len({_claims(r.json()["refresh"])["jti"] for r in responses}) == 1


async def test_grandparent_replay_inside_the_interval_revokes(client, user, authapi_settings):
    with authapi_settings(REFRESH_REUSE_INTERVAL=10):
        grandparent = await login(client, user)
        parent = (await _refresh(client, grandparent["refresh"])).json()
        child = (await _refresh(client, parent["refresh"])).json()
        replay = await _refresh(client, grandparent["refresh"])
        assert replay.status_code == 401
        assert (await _refresh(client, child["refresh"])).status_code == 401
    assert not await alive(client, child["access"])


async def test_parent_replay_after_the_interval_revokes(client, user, clock, authapi_settings):
    with authapi_settings(REFRESH_REUSE_INTERVAL=10):
        parent = await login(client, user)
        child = (await _refresh(client, parent["refresh"])).json()
        clock.shift(11)
        assert (await _refresh(client, parent["refresh"])).status_code == 401
        assert (await _refresh(client, child["refresh"])).status_code == 401
    assert not await alive(client, child["access"])


async def test_default_interval_zero_treats_the_parent_as_reuse(client, user):
    parent = await login(client, user)
    child = (await _refresh(client, parent["refresh"])).json()
    assert (await _refresh(client, parent["refresh"])).status_code == 401
    assert not await alive(client, child["access"])


BROWSER_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


async def test_a_live_session_costs_under_1_kib_of_redis(client, make_user, redis_client):
    """MEMORY USAGE over the session hash and the user's index, with a real browser's user
    agent and a full profile, after a refresh (the hash holds both refresh generations)."""
    user = await make_user(email="ada.lovelace@example.com", first_name="Ada", last_name="Lovelace")
    pair = await login(client, user, headers={"User-Agent": BROWSER_UA})
    turned = await client.post(
        "/api/auth/refresh", json={"refresh": pair["refresh"]}, headers={"User-Agent": BROWSER_UA}
    )
    assert turned.status_code == 200
    keys = await redis_client.keys(f"authapi:{{u{user.pk}}}:*")
    assert len(keys) == 2  # the session hash and the index
    used = sum([await redis_client.memory_usage(k) or 0 for k in keys])
    assert used <= 1024, used

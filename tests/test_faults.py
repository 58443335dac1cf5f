"""Redis goes away mid-test: every door fails closed with 503, then recovers by itself."""

from __future__ import annotations

import os
import signal
from contextlib import asynccontextmanager

import pytest

from tests.conftest import PASSWORD, bearer, login


@asynccontextmanager
async def redis_down(redis):
    redis.stop()
    try:
        yield
    finally:
        redis.start()


def _assert_unavailable(response) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["code"] == "service_unavailable" and body["detail"]
    assert int(response.headers["Retry-After"]) > 0


async def test_every_door_fails_closed_and_recovers(client, redis, user):
    pair = await login(client, user)
    spare = await login(client, user)
    auth = bearer(pair["access"])
    async with redis_down(redis):
        _assert_unavailable(await client.get("/api/auth/me", headers=auth))
        _assert_unavailable(await client.get("/api/auth/sessions", headers=auth))
        _assert_unavailable(await client.get("/demo/async", headers=auth))
        _assert_unavailable(await client.get("/demo/sync", headers=auth))
        _assert_unavailable(
            await client.post(
                "/api/auth/login", json={"username": user.username, "password": PASSWORD}
            )
        )
        _assert_unavailable(
            await client.post("/api/token/", data={"username": "x", "password": "y"})
        )
        _assert_unavailable(
            await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
        )
        _assert_unavailable(await client.post("/api/auth/verify", json={"token": pair["access"]}))
        _assert_unavailable(
            await client.post("/api/auth/logout", json={"refresh": spare["refresh"]})
        )
        _assert_unavailable(await client.post("/api/auth/logout-all", headers=auth))
        health = await client.get("/health")
        _assert_unavailable(health)
        assert health.json()["redis"] == "unavailable" and health.json()["database"] == "ok"

    # back without restarting the app; nothing was spent or revoked while it was down
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/api/auth/me", headers=auth)).status_code == 200
    refreshed = await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
    assert refreshed.status_code == 200
    assert (await client.post("/api/auth/logout", json={"refresh": spare["refresh"]})).is_success
    await login(client, user)


async def test_bad_tokens_are_still_401_while_redis_is_down(client, redis):
    """What the signature check alone can refuse is refused without asking Redis."""
    async with redis_down(redis):
        response = await client.get("/api/auth/me", headers=bearer("not-a-token"))
        assert response.status_code == 401
        missing = await client.get("/api/auth/me")
        assert missing.status_code == 401


async def test_a_hung_redis_times_out_into_503(client, redis, user):
    """A server that accepts but never answers (SIGSTOP) is unreachable too, not a hang."""
    pair = await login(client, user)
    assert redis.process is not None
    os.kill(redis.process.pid, signal.SIGSTOP)
    try:
        _assert_unavailable(await client.get("/api/auth/me", headers=bearer(pair["access"])))
    finally:
        os.kill(redis.process.pid, signal.SIGCONT)
    assert (await client.get("/api/auth/me", headers=bearer(pair["access"]))).status_code == 200


@pytest.mark.parametrize("path", ["/api/auth/me", "/demo/async"])
async def test_revocation_holds_across_a_restart_of_redis(client, redis, user, path):
    """A revoked token never comes back because Redis restarted and lost nothing we need."""
    pair = await login(client, user)
    await client.post("/api/auth/logout", json={"refresh": pair["refresh"]})
    redis.stop()
    redis.start()
    response = await client.get(path, headers=bearer(pair["access"]))
    assert response.status_code == 401

"""The user database goes away: what needs it answers 503 JSON, the access check does not care."""

from __future__ import annotations

import tempfile
from contextlib import asynccontextmanager

from asgiref.sync import sync_to_async
from django.db import connections

from authapi.asgi import threads as sync_threads
from tests.conftest import PASSWORD, bearer, login


def _close_all() -> None:
    for connection in connections.all(initialized_only=True):
        connection.close()
    sync_threads.close_connections()  # the threads requests run their sync work on keep theirs


@asynccontextmanager
async def database_down():
    """Point the default database at a path SQLite cannot open (a directory)."""
    settings_dict = connections.settings["default"]
    original = settings_dict["NAME"]
    await sync_to_async(_close_all)()
    settings_dict["NAME"] = tempfile.mkdtemp(prefix="authapi-no-db-")
    try:
        yield
    finally:
        await sync_to_async(_close_all)()
        settings_dict["NAME"] = original


def _assert_unavailable(response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "service_unavailable"
    assert int(response.headers["Retry-After"]) > 0


async def test_database_down(client, user):
    pair = await login(client, user)
    async with database_down():
        body = {"username": user.username, "password": PASSWORD}
        _assert_unavailable(await client.post("/api/auth/login", json=body))
        _assert_unavailable(
            await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
        )
        # /me answers from the session's snapshot of the user: no database needed
        me = await client.get("/api/auth/me", headers=bearer(pair["access"]))
        assert me.status_code == 200 and me.json()["username"] == user.username
        health = await client.get("/health")
        assert health.status_code == 503 and health.json()["database"] == "unavailable"
        # the access check itself needs no database: claims-only views keep working
        assert (await client.get("/demo/async", headers=bearer(pair["access"]))).status_code == 200
        assert (await client.get("/api/auth/sessions", headers=bearer(pair["access"]))).is_success
    assert (await client.get("/health")).status_code == 200
    assert (await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})).is_success

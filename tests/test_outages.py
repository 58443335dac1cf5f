"""A 503 logs its cause once per outage, and a line when it is over; never a password."""

from __future__ import annotations

import logging

import pytest

from authapi import outages
from tests.conftest import PASSWORD, bearer, login
from tests.test_database_faults import database_down


def _ours(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith(("authapi", "django"))]


async def test_a_stopped_store_is_logged_once_with_its_cause_and_once_when_back(
    client, redis, user, caplog
):
    pair = await login(client, user)
    caplog.set_level(logging.INFO)
    body = {"username": user.username, "password": PASSWORD}
    redis.stop()
    try:
        for _ in range(3):
            assert (await client.post("/api/auth/login", json=body)).status_code == 503
        me = await client.get("/api/auth/me", headers=bearer(pair["access"]))
        assert me.status_code == 503
        assert (await client.get("/health")).status_code == 503
    finally:
        redis.start()
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/health")).status_code == 200

    records = _ours(caplog)
    errors = [r for r in records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    cause = errors[0].getMessage()
    assert cause.startswith("store unavailable: REDIS_URL redis://127.0.0.1:")
    assert f":{redis.port}/0" in cause and "ConnectionError" in cause
    back = [r.getMessage() for r in records if "available again" in r.getMessage()]
    assert len(back) == 1 and back[0].startswith("store available again")
    assert "5 request(s) answered 503" in back[0]
    assert not any("Service Unavailable" in r.getMessage() for r in records)


async def test_a_database_outage_is_logged_once_naming_the_database(client, user, caplog):
    caplog.set_level(logging.INFO)
    body = {"username": user.username, "password": PASSWORD}
    async with database_down():
        for _ in range(3):
            assert (await client.post("/api/auth/login", json=body)).status_code == 503
        assert (await client.get("/health")).status_code == 503
    assert (await client.post("/api/auth/login", json=body)).status_code == 200

    records = _ours(caplog)
    errors = [r.getMessage() for r in records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert errors[0].startswith("database unavailable: ") and "OperationalError" in errors[0]
    back = [r.getMessage() for r in records if "available again" in r.getMessage()]
    assert len(back) == 1 and back[0].startswith("database available again")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        ("rediss://app:hunter2@cache:6380/1", "rediss://app:***@cache:6380/1"),
        ("redis://app@cache:6379", "redis://app@cache:6379"),
        ("redis+cluster://u:hunter2@h1:1,h2:2", "redis+cluster://u:***@h1:1,h2:2"),
        ("unix:///d/valkey.sock?password=hunter2", "unix:///d/valkey.sock?password=***"),
        ("redis://cache:6379/0?db=1&password=hunter2", "redis://cache:6379/0?db=1&password=***"),
        ("nonsense hunter2", "***"),
    ],
)
def test_urls_are_logged_without_their_password(url, shown):
    assert outages.redact(url) == shown


def test_a_cause_that_quotes_the_password_is_redacted_too():
    cause = ConnectionError("AUTH hunter2 refused")
    text = outages.describe(cause, "unix:///d/valkey.sock?password=hunter2")
    assert text == "ConnectionError: AUTH *** refused"

"""JWTBearer on the users' own Ninja views: header forms, sync and async views, the cost."""

from __future__ import annotations

import os
from contextlib import contextmanager

import pytest
import redis.asyncio as aioredis
from django.db.backends import utils as db_utils

from tests.conftest import bearer, login


@pytest.mark.parametrize("path", ["/demo/async", "/demo/sync"])
async def test_views_get_the_claims(client, user, path):
    pair = await login(client, user)
    response = await client.get(path, headers=bearer(pair["access"]))
    assert response.status_code == 200, response.text
    assert response.json()["user_id"] == user.pk
    assert response.json()["sid"]


@pytest.mark.parametrize(
    "header",
    ["Bearer {}", "bearer {}", "BEARER {}", "Bearer  {} ", " Bearer {}"],
    ids=["canonical", "lower", "upper", "extra-space", "leading-space"],
)
async def test_accepted_header_forms(client, user, header):
    pair = await login(client, user)
    value = header.format(pair["access"])
    response = await client.get("/demo/async", headers={"Authorization": value})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "not_authenticated"),
        ("", "not_authenticated"),
        ("Token {}", "not_authenticated"),
        ("Basic dXNlcjpwYXNz", "not_authenticated"),
        ("{}", "not_authenticated"),
        ("Bearer", "token_not_valid"),
        ("Bearer {} {}", "token_not_valid"),
        ("Bearer {}x", "token_not_valid"),
    ],
    ids=["absent", "empty", "token-scheme", "basic", "no-scheme", "scheme-only", "two-tokens",
         "trailing-junk"],
)  # fmt: skip
@pytest.mark.parametrize("path", ["/demo/async", "/demo/sync", "/api/auth/me"])
async def test_refused_header_forms(client, user, header, code, path):
    pair = await login(client, user)
    headers = {} if header is None else {"Authorization": header.format(*[pair["access"]] * 2)}
    response = await client.get(path, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["code"] == code
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer")
    assert ('error="invalid_token"' in challenge) == (code == "token_not_valid")


async def test_view_can_ask_for_the_user(client, user):
    pair = await login(client, user)
    response = await client.get("/demo/user", headers=bearer(pair["access"]))
    assert response.status_code == 200
    assert response.json() == {"username": user.username}


async def test_api_without_our_handlers_still_answers_json(client, user):
    """A user's NinjaAPI that never called install_error_handlers: the middleware answers."""
    pair = await login(client, user)
    ok = await client.get("/bare/async", headers=bearer(pair["access"]))
    assert ok.status_code == 200
    bad = await client.get("/bare/async", headers=bearer(pair["refresh"]))
    assert bad.status_code == 401
    assert bad.json()["code"] == "token_not_valid"
    assert 'error="invalid_token"' in bad.headers["WWW-Authenticate"]


@contextmanager
def count_queries():
    """Count SQL statements on every connection and thread (sync_to_async runs elsewhere)."""
    seen: list[str] = []
    original = db_utils.CursorWrapper.execute

    def execute(self, sql, params=None):
        seen.append(sql)
        return original(self, sql, params)

    db_utils.CursorWrapper.execute = execute  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        db_utils.CursorWrapper.execute = original  # type: ignore[method-assign]


async def _commands_served(redis_client) -> int:
    stats = await redis_client.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")


@pytest.mark.parametrize("path", ["/demo/async", "/demo/sync"])
async def test_access_check_costs_no_query_and_one_redis_command(client, user, path):
    pair = await login(client, user)
    headers = bearer(pair["access"])
    assert (await client.get(path, headers=headers)).status_code == 200  # warm connections
    observer = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        # other tests are idle; only our requests and INFO touch the server
        before = await _commands_served(observer)
        with count_queries() as queries:
            for _ in range(10):
                assert (await client.get(path, headers=headers)).status_code == 200
        after = await _commands_served(observer)
    finally:
        await observer.aclose()
    assert queries == []
    assert after - before == 10


async def test_revoked_and_unknown_sessions_are_refused(client, user):
    pair = await login(client, user)
    out = await client.post(
        "/api/auth/logout", json={"refresh": pair["refresh"]}, headers=bearer(pair["access"])
    )
    assert out.status_code == 204
    for path in ("/demo/async", "/demo/sync", "/api/auth/me"):
        response = await client.get(path, headers=bearer(pair["access"]))
        assert response.status_code == 401
        assert response.json() == {"detail": "Token has been revoked", "code": "token_not_valid"}

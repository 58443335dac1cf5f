"""A bounded soak over a real socket: many users' whole life cycles at once, nothing left.

50 users log in, refresh five times, call /me and log out, all concurrently, against
uvicorn on 127.0.0.1; every answer must be the expected one, and afterwards none of their
keys may remain in Redis. Bounded by count, a few seconds.
"""

from __future__ import annotations

import asyncio
import os

import httpx
import redis.asyncio as aioredis

from tests.conftest import PASSWORD, LiveServer

USERS = 50
REFRESHES = 5


async def _life(http: httpx.AsyncClient, username: str) -> list[int]:
    statuses = []
    response = await http.post("/api/auth/login", json={"username": username, "password": PASSWORD})
    statuses.append(response.status_code)
    pair = response.json()
    for _ in range(REFRESHES):
        response = await http.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
        statuses.append(response.status_code)
        pair = response.json()
    auth = {"Authorization": f"Bearer {pair['access']}"}
    statuses.append((await http.get("/api/auth/me", headers=auth)).status_code)
    out = await http.post("/api/auth/logout", json={"refresh": pair["refresh"]}, headers=auth)
    statuses.append(out.status_code)
    statuses.append((await http.get("/api/auth/me", headers=auth)).status_code)
    return statuses


async def test_many_concurrent_life_cycles_leave_nothing_behind(make_user):
    users = [await make_user() for _ in range(USERS)]
    limits = httpx.Limits(max_connections=USERS)
    with LiveServer() as server:
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as http:
            results = await asyncio.gather(*[_life(http, u.username) for u in users])
    expected = [200] * (1 + REFRESHES) + [200, 204, 401]
    assert all(r == expected for r in results), [r for r in results if r != expected][:3]
    observer = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        for user in users:
            assert await observer.keys(f"authapi:{{u{user.pk}}}:*") == []
    finally:
        await observer.aclose()

"""The hot path, side by side: an authenticated GET that returns the caller's user id.

    .venv/bin/pip install -e '.[bench]' && .venv/bin/python -m bench.access_check

Runs every library in one process on one event loop (httpx over ASGI, no sockets), with the
embedded valkey-server as our store and SQLite as the user database. Prints p50/p99
latency of sequential requests, throughput at concurrency 32, and store commands per
request, with ratios against ours. Bounded: a fixed number of requests per row.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time

SEQUENTIAL = int(os.environ.get("BENCH_REQUESTS", "2000"))
CONCURRENT = 32

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
os.environ.setdefault("AUTHAPI_DATA_DIR", tempfile.mkdtemp(prefix="authapi-bench-", dir="/tmp"))
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-secret-" + "x" * 50)

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
from asgiref.sync import sync_to_async  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.management import call_command  # noqa: E402


def _setup_user():
    call_command("migrate", verbosity=0)
    model = get_user_model()
    user = model.objects.filter(username="bench").first()
    return user or model.objects.create_user("bench", password="bench-password")


async def _store_commands() -> int:
    from authapi import store

    s = await store._get()
    info = await s.redis.info("stats")
    return int(info["total_commands_processed"])


async def _row(client, name, url, token, store_cmds) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(50):  # warm up
        assert (await client.get(url, headers=headers)).status_code == 200
    before = await _store_commands()
    samples = []
    for _ in range(SEQUENTIAL):
        start = time.perf_counter()
        response = await client.get(url, headers=headers)
        samples.append(time.perf_counter() - start)
        assert response.status_code == 200, response.text
    after = await _store_commands()
    start = time.perf_counter()
    for _ in range(SEQUENTIAL // CONCURRENT):
        results = await asyncio.gather(
            *(client.get(url, headers=headers) for _ in range(CONCURRENT))
        )
        assert all(r.status_code == 200 for r in results)
    rps = (SEQUENTIAL // CONCURRENT) * CONCURRENT / (time.perf_counter() - start)
    samples.sort()
    return {
        "name": name,
        "p50": statistics.median(samples) * 1e6,
        "p99": samples[int(len(samples) * 0.99) - 1] * 1e6,
        "rps": rps,
        # one extra INFO command is counted in `after`
        "cmds": (after - before - 1) / SEQUENTIAL if store_cmds else None,
    }


async def main() -> None:
    from ninja_jwt.tokens import AccessToken as NinjaAccessToken
    from rest_framework_simplejwt.tokens import AccessToken as SimpleAccessToken

    from authapi import store

    user = await sync_to_async(_setup_user)()
    app = get_asgi_application()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        login = await client.post(
            "/api/auth/login", json={"username": "bench", "password": "bench-password"}
        )
        ours = login.json()["access"]
        simple = str(SimpleAccessToken.for_user(user))
        ninja = str(NinjaAccessToken.for_user(user))
        cases = [
            ("authapi JWTBearer (revocation checked)", "/bench/ours/whoami", ours, True),
            ("django-ninja-jwt AsyncJWTAuth", "/bench/ninja-jwt/whoami", ninja, False),
            ("django-ninja-jwt stateless", "/bench/ninja-jwt/whoami-stateless", ninja, False),
            ("simplejwt JWTAuthentication (DRF)", "/bench/simplejwt/whoami", simple, False),
            ("simplejwt stateless (DRF)", "/bench/simplejwt/whoami-stateless", simple, False),
        ]
        rows = [await _row(client, *case) for case in cases]
        await store.revoke_user(user.pk)
    base = rows[0]
    print(f"\n{SEQUENTIAL} sequential + {SEQUENTIAL} at concurrency {CONCURRENT}, ASGI\n")
    print(f"| {'library':40} | p50 µs | p99 µs | req/s "
          "| p50 vs ours | req/s vs ours | store cmds/req |")  # fmt: skip
    print(f"|{'-' * 42}|-------:|-------:|------:|------------:|--------------:|---------------:|")
    for r in rows:
        cmds = f"{r['cmds']:.2f}" if r["cmds"] is not None else "-"
        print(
            f"| {r['name']:40} | {r['p50']:6.0f} | {r['p99']:6.0f} | {r['rps']:5.0f} "
            f"| {r['p50'] / base['p50']:10.2f}x | {r['rps'] / base['rps']:12.2f}x | {cmds:>14} |"
        )
    print("\nPeers without 'stateless' read the user from the database on every request;")
    print("the stateless peers check no revocation at all.")


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)

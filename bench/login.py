"""Logins per second with Django's default PBKDF2 hasher, ours against the peers.

    .venv/bin/pip install -e '.[bench]' && .venv/bin/python -m bench.login

One process, one event loop, httpx over ASGI. Each library gets the same number of
logins at the same concurrency; the hashing dominates, so what is measured is whether
a library can hash on every core (ours: a thread pool as wide as the machine) or
serialises logins behind Django's single sync thread (sync views and sync_to_async).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time

LOGINS = int(os.environ.get("BENCH_LOGINS", "48"))
CONCURRENT = 8

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings_login")
os.environ.setdefault("AUTHAPI_DATA_DIR", tempfile.mkdtemp(prefix="authapi-bench-", dir="/tmp"))
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-secret-" + "x" * 50)
os.environ.setdefault("AUTHAPI_LOGIN_RATE", "0")

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
from asgiref.sync import sync_to_async  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.management import call_command  # noqa: E402

BODY = {"username": "bench-login", "password": "bench-password"}


def _setup_user() -> None:
    call_command("migrate", verbosity=0)
    model = get_user_model()
    model.objects.filter(username=BODY["username"]).delete()
    model.objects.create_user(BODY["username"], password=BODY["password"])


async def _row(client: httpx.AsyncClient, name: str, url: str) -> dict:
    async def one() -> float:
        start = time.perf_counter()
        response = await client.post(url, json=BODY)
        assert response.status_code == 200, (name, response.status_code, response.text[:200])
        return time.perf_counter() - start

    await one()  # warm up
    latencies = [await one() for _ in range(8)]
    start = time.perf_counter()
    for _ in range(LOGINS // CONCURRENT):
        await asyncio.gather(*(one() for _ in range(CONCURRENT)))
    rate = (LOGINS // CONCURRENT) * CONCURRENT / (time.perf_counter() - start)
    return {"name": name, "p50": statistics.median(latencies) * 1000, "rate": rate}


async def main() -> None:
    from authapi import store

    await sync_to_async(_setup_user)()
    app = get_asgi_application()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        cases = [
            ("authapi /api/auth/login", "/api/auth/login"),
            ("django-ninja-jwt async /token/pair", "/bench/ninja-jwt-login/token/pair"),
            ("simplejwt TokenObtainPairView (DRF)", "/bench/simplejwt/token/"),
        ]
        rows = [await _row(client, *case) for case in cases]
        user = await get_user_model().objects.aget(username=BODY["username"])
        await store.revoke_user(user.pk)
    base = rows[0]
    cores = os.cpu_count()
    print(f"\n{LOGINS} logins at concurrency {CONCURRENT}, PBKDF2, {cores} cores, ASGI\n")
    print(f"| {'library':38} | p50 ms (alone) | logins/s | logins/s vs ours |")
    print(f"|{'-' * 40}|---------------:|---------:|-----------------:|")
    for r in rows:
        print(
            f"| {r['name']:38} | {r['p50']:14.0f} | {r['rate']:8.1f} "
            f"| {r['rate'] / base['rate']:15.2f}x |"
        )


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)

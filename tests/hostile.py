"""Hostile clients over real sockets (loopback only, bounded in count and time), shared
by tests/test_hostile_clients.py and the chaos run."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import statistics
import time
import uuid
from collections.abc import Iterator

import httpx

BIG_FILE = "/static/ninja/redoc.standalone.js.map"  # 3.3 MB, Ninja's own static file
SLOW_READERS = 10
FLOOD_LOGINS = 40
TIMEOUT = 10.0  # a request that takes this long counts as this long


def _open_readers(port: int, count: int, path: str, sockets: list[socket.socket]) -> None:
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sockets.append(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())


@contextlib.contextmanager
def slow_readers(port: int, count: int = SLOW_READERS, path: str = BIG_FILE) -> Iterator[int]:
    """``count`` connections that ask for a large file and never read a byte of it."""
    sockets: list[socket.socket] = []
    try:
        _open_readers(port, count, path, sockets)
        time.sleep(1.0)  # the server has started on every answer and is stuck sending it
        yield len(sockets)
    finally:
        for sock in sockets:
            sock.close()


async def slow_readers_for(port: int, seconds: float, count: int = SLOW_READERS) -> int:
    """:func:`slow_readers` for ``seconds``, without blocking the caller's loop."""
    sockets: list[socket.socket] = []
    try:
        await asyncio.to_thread(_open_readers, port, count, BIG_FILE, sockets)
        await asyncio.sleep(seconds)
        return len(sockets)
    finally:
        for sock in sockets:
            sock.close()


async def login_flood(url: str, count: int = FLOOD_LOGINS) -> list[int]:
    """``count`` concurrent failing logins with random usernames; their statuses."""

    async def one(http: httpx.AsyncClient) -> int:
        body = {"username": f"nobody-{uuid.uuid4().hex}", "password": "wrong password"}
        try:
            return (await http.post("/api/auth/login", json=body)).status_code
        except httpx.TimeoutException:
            return 0

    limits = httpx.Limits(max_connections=count + 1, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        return list(await asyncio.gather(*(one(http) for _ in range(count))))


async def timed(
    http: httpx.AsyncClient, method: str, path: str, **kw: object
) -> tuple[float, httpx.Response | None]:
    start = time.monotonic()
    try:
        response = await http.request(method, path, timeout=TIMEOUT, **kw)  # type: ignore[arg-type]
    except httpx.TimeoutException:
        return TIMEOUT, None
    return time.monotonic() - start, response


async def everyday_medians(
    url: str, sessions: list[dict], waves: int = 3, pause: float = 0.3
) -> dict[str, float]:
    """Median seconds of /health, refresh and the access check (/me): in each wave, one of
    each per session, all at once; every answer must be the usual one. ``sessions`` (login
    answers) are refreshed in place."""
    seconds: dict[str, list[float]] = {"health": [], "refresh": [], "access": []}
    limits = httpx.Limits(max_keepalive_connections=0)

    async def health(http: httpx.AsyncClient) -> None:
        took, response = await timed(http, "GET", "/health")
        seconds["health"].append(took)
        assert response is None or response.status_code == 200, response.text

    async def refresh(http: httpx.AsyncClient, pair: dict) -> None:
        took, response = await timed(
            http, "POST", "/api/auth/refresh", json={"refresh": pair["refresh"]}
        )
        seconds["refresh"].append(took)
        if response is not None:
            assert response.status_code == 200, response.text
            pair.update(response.json())
        else:
            pair["refresh"] = ""  # fate unknown: not presented again

    async def access(http: httpx.AsyncClient, pair: dict) -> None:
        headers = {"Authorization": f"Bearer {pair['access']}"}
        took, response = await timed(http, "GET", "/api/auth/me", headers=headers)
        seconds["access"].append(took)
        assert response is None or response.status_code == 200, response.text

    async with httpx.AsyncClient(base_url=url, limits=limits) as http:
        for wave in range(waves):
            if wave:
                await asyncio.sleep(pause)
            calls = [health(http) for _ in sessions]
            calls += [refresh(http, pair) for pair in sessions if pair["refresh"]]
            calls += [access(http, pair) for pair in sessions]
            await asyncio.gather(*calls)
    return {name: statistics.median(values) for name, values in seconds.items() if values}

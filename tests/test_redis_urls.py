"""REDIS_URL forms beyond one server: a real three-node Redis Cluster and a real Sentinel.

The same HTTP flows run against each: login, the access check, rotation, reuse,
sessions, logout-all, throttling. A script that touched keys of two slots would fail
here with CROSSSLOT or "undeclared key" errors.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

from authapi import store
from authapi.embedded import server_binary
from tests.conftest import bearer, login
from tests.redis_server import free_ports


def _ask(port: int, *args: str) -> bytes:
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args
    )
    with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
        conn.sendall(payload)
        return conn.recv(65536)


def _wait(predicate, what: str, seconds: float = 20, logs=None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}\n{logs() if logs else ''}")


class Processes:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="authapi-cluster-"))
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> None:
        log = open(self.dir / f"server-{len(self.procs)}.log", "wb")  # noqa: SIM115
        with log:
            self.procs.append(
                subprocess.Popen(
                    [server_binary(), *args], cwd=self.dir, stdout=log, stderr=subprocess.STDOUT
                )
            )

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in self.dir.glob("*.log"))

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    """Three masters, slots split between them, met and agreed."""
    group = Processes()
    chosen = free_ports(6)
    ports, bus_ports = chosen[:3], chosen[3:]  # the default bus port +10000 may not exist
    try:
        for port, bus in zip(ports, bus_ports, strict=True):
            group.start(
                "--port", str(port), "--cluster-port", str(bus), "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{port}.conf", "--save", "",
                "--appendonly", "no",
            )  # fmt: skip
        for port in ports:
            _wait(
                lambda p=port: _ask(p, "PING").startswith(b"+PONG"),
                "a cluster node",
                logs=group.logs,
            )
        bounds = [(0, 5460), (5461, 10922), (10923, 16383)]
        for port, (low, high) in zip(ports, bounds, strict=True):
            assert _ask(port, "CLUSTER", "ADDSLOTSRANGE", str(low), str(high)).startswith(b"+OK")
        for port, bus in zip(ports[1:], bus_ports[1:], strict=True):
            _ask(ports[0], "CLUSTER", "MEET", "127.0.0.1", str(port), str(bus))
        for port in ports:
            _wait(
                lambda p=port: b"cluster_state:ok" in _ask(p, "CLUSTER", "INFO"),
                "the cluster to agree",
                logs=group.logs,
            )
        yield f"redis+cluster://127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}"
    finally:
        group.stop()


@pytest.fixture(scope="module")
def sentinel_url() -> Iterator[str]:
    """A master and one sentinel watching it, as ``mymaster``."""
    group = Processes()
    master, sentinel = free_ports(2)
    try:
        group.start("--port", str(master), "--bind", "127.0.0.1", "--save", "")
        _wait(lambda: _ask(master, "PING").startswith(b"+PONG"), "the master")
        conf = group.dir / "sentinel.conf"
        conf.write_text(
            f"port {sentinel}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {master} 1\n"
        )
        group.start(str(conf), "--sentinel")
        _wait(
            lambda: (
                str(master).encode()
                in _ask(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")
            ),
            "the sentinel",
        )
        yield f"redis+sentinel://127.0.0.1:{sentinel}/mymaster"
    finally:
        group.stop()


async def _full_flow(client, make_user) -> None:
    alice, bob = await make_user(), await make_user()
    first = await login(client, alice, headers={"User-Agent": "flow"})
    me = await client.get("/api/auth/me", headers=bearer(first["access"]))
    assert me.status_code == 200
    nxt = await client.post("/api/auth/refresh", json={"refresh": first["refresh"]})
    assert nxt.status_code == 200
    reused = await client.post("/api/auth/refresh", json={"refresh": first["refresh"]})
    assert reused.status_code == 401
    assert (
        await client.get("/api/auth/me", headers=bearer(nxt.json()["access"]))
    ).status_code == 401
    pairs = [await login(client, alice) for _ in range(3)]
    listed = await client.get("/api/auth/sessions", headers=bearer(pairs[0]["access"]))
    assert listed.status_code == 200 and len(listed.json()) == 3
    sid = listed.json()[1]["id"]
    gone = await client.delete(f"/api/auth/sessions/{sid}", headers=bearer(pairs[0]["access"]))
    assert gone.status_code == 204
    bobs = await login(client, bob)
    out = await client.post("/api/auth/logout-all", headers=bearer(pairs[0]["access"]))
    assert out.status_code == 204
    assert (await client.get("/api/auth/me", headers=bearer(pairs[2]["access"]))).status_code == 401
    assert (await client.get("/api/auth/me", headers=bearer(bobs["access"]))).status_code == 200
    out = await client.post(
        "/api/auth/logout", json={"refresh": bobs["refresh"]}, headers=bearer(bobs["access"])
    )
    assert out.status_code == 204
    wrong = await client.post("/api/auth/login", json={"username": bob.username, "password": "x"})
    assert wrong.status_code == 401
    assert (await client.get("/health")).status_code == 200
    # and the data really is on the server the URL names
    from django.conf import settings

    from authapi import store

    direct = store.Store.connect(str(settings.REDIS_URL))
    try:
        throttled = store.attempt_keys("127.0.0.1", bob.username)
        assert await direct.redis.exists(throttled.pair) == 1
        assert await direct.redis.exists(store.index_key(alice.pk)) == 0  # logout-all emptied it
    finally:
        await direct.close()


async def test_redis_cluster(client, make_user, cluster_url):
    with override_settings(REDIS_URL=cluster_url):
        async with store.closing():
            await _full_flow(client, make_user)


async def test_redis_sentinel(client, make_user, sentinel_url):
    with override_settings(REDIS_URL=sentinel_url):
        async with store.closing():
            await _full_flow(client, make_user)


@pytest.mark.parametrize(
    "url",
    ["redis+sentinel://127.0.0.1:1", "redis+cluster://127.0.0.1:notaport"],
    ids=["sentinel-without-service", "bad-port"],
)
def test_malformed_urls_are_clear_errors(url):
    from django.core.exceptions import ImproperlyConfigured

    from authapi import redis_url

    with pytest.raises(ImproperlyConfigured, match="REDIS_URL"):
        redis_url.connect(url)

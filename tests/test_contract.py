"""API.md, as its "Running it" section says, over a real socket.

A fresh data folder and no REDIS_URL (so the embedded server), then exactly the three
documented commands: migrate, createsuperuser --noinput, uvicorn. Then every endpoint
of the contract, the way an HTTP client that knows only API.md would call it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.conftest import ROOT, LiveServer

PASSWORD = "s3cret-pass"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def service() -> Iterator[LiveServer]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AUTHAPI_", "DJANGO_", "REDIS_URL", "DATABASE_URL"))
    }
    env["AUTHAPI_DATA_DIR"] = tempfile.mkdtemp(prefix="authapi-contract-")
    env["DJANGO_SUPERUSER_PASSWORD"] = PASSWORD

    def manage(*args: str) -> None:
        subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True,
            capture_output=True, timeout=120,
        )  # fmt: skip

    manage("migrate")
    manage("createsuperuser", "--noinput", "--username", "alice", "--email", "a@example.com")
    server = LiveServer()
    server.env = env
    with server:
        yield server


@pytest.fixture
async def http(service) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.url) as client:
        yield client


def _error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["detail"], str) and isinstance(body["code"], str)
    if code:
        assert body["code"] == code
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_curl_style_login_and_the_whole_life_cycle(http):
    login = await http.post(
        "/api/auth/login",
        content=f"username=alice&password={PASSWORD}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert login.status_code == 200, login.text
    pair = login.json()
    assert pair["token_type"] == "Bearer"
    assert pair["expires_in"] > 0 and pair["refresh_expires_in"] > 0
    auth = {"Authorization": f"Bearer {pair['access']}"}

    me = await http.get("/api/auth/me", headers=auth)
    assert me.status_code == 200 and me.json()["username"] == "alice" and "id" in me.json()

    sessions = (await http.get("/api/auth/sessions", headers=auth)).json()
    assert len(sessions) == 1 and sessions[0]["current"] is True
    assert {"id", "created_at", "last_used_at", "user_agent", "ip", "current"} <= set(sessions[0])

    assert (await http.post("/api/auth/verify", json={"token": pair["access"]})).status_code == 200
    nxt = await http.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
    assert nxt.status_code == 200
    _error(await http.post("/api/auth/refresh", json={"refresh": pair["refresh"]}), 401)
    _error(
        await http.get("/api/auth/me", headers={"Authorization": f"Bearer {nxt.json()['access']}"}),
        401,
    )

    again = (
        await http.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    ).json()
    auth = {"Authorization": f"Bearer {again['access']}"}
    out = await http.post("/api/auth/logout", json={"refresh": again["refresh"]}, headers=auth)
    assert out.status_code == 204
    _error(await http.get("/api/auth/me", headers=auth), 401, "token_not_valid")

    third = (
        await http.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    ).json()
    fourth = (
        await http.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    ).json()
    sid = (
        await http.get("/api/auth/sessions", headers={"Authorization": f"Bearer {third['access']}"})
    ).json()[-1]["id"]
    deleted = await http.delete(
        f"/api/auth/sessions/{sid}", headers={"Authorization": f"Bearer {third['access']}"}
    )
    assert deleted.status_code == 204
    _error(
        await http.get("/api/auth/me", headers={"Authorization": f"Bearer {fourth['access']}"}), 401
    )
    everywhere = await http.post(
        "/api/auth/logout-all", headers={"Authorization": f"Bearer {third['access']}"}
    )
    assert everywhere.status_code == 204
    _error(await http.post("/api/auth/verify", json={"token": third["refresh"]}), 401)


async def test_simplejwt_aliases(http):
    pair = (await http.post("/api/token/", data={"username": "alice", "password": PASSWORD})).json()
    assert {"access", "refresh"} <= set(pair)
    nxt = await http.post("/api/token/refresh/", data={"refresh": pair["refresh"]})
    assert nxt.status_code == 200
    assert (
        await http.post("/api/token/verify/", data={"token": nxt.json()["access"]})
    ).status_code == 200
    out = await http.post("/api/token/blacklist/", data={"refresh": nxt.json()["refresh"]})
    assert out.is_success
    _error(await http.post("/api/token/verify/", data={"token": nxt.json()["access"]}), 401)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("post", "/api/auth/login", {"json": {"username": "alice", "password": "wrong"}}, 401),
        ("post", "/api/auth/login", {"json": {"username": "alice"}}, 422),
        ("post", "/api/auth/login", {"content": b"{", "headers": JSON}, 400),
        ("post", "/api/auth/login", {"content": b"x", "headers": {"Content-Type": "text/plain"}},
         415),
        ("post", "/api/auth/login", {"json": {"username": "a", "password": "x" * 20000}}, 413),
        ("post", "/api/auth/refresh", {"json": {"refresh": "not.a.token"}}, 401),
        ("post", "/api/auth/verify", {"json": {"token": "not.a.token"}}, 401),
        ("get", "/api/auth/me", {}, 401),
        ("get", "/api/auth/me", {"headers": {"Authorization": "Bearer x.y.z"}}, 401),
        ("post", "/api/auth/logout-all", {}, 401),
        ("get", "/api/auth/sessions", {}, 401),
        ("get", "/.well-known/jwks.json", {}, 404),
        ("get", "/no/such/page", {}, 404),
    ],
)  # fmt: skip
async def test_error_table(http, method, path, kwargs, status):
    _error(await http.request(method.upper(), path, **kwargs), status)


async def test_docs_openapi_health(http):
    docs = await http.get("/api/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = (await http.get("/api/openapi.json")).json()
    assert any(s.get("scheme") == "bearer" for s in spec["components"]["securitySchemes"].values())
    health = await http.get("/health")
    assert health.status_code == 200

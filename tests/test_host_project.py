"""examples/hostproject: `django-admin startproject` plus authapi's three lines, driven over
HTTP: log in, call the host's own guarded routes, refresh, log out. Django's stock
middleware, no silenced checks, no authapi ASGI wrapper."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests import dpop_client
from tests.conftest import ROOT, bearer
from tests.redis_server import RedisServer, free_port

EXAMPLE = ROOT / "examples" / "hostproject"


@contextmanager
def running_host(tmp_path: Path, **env_changes: str | None) -> Iterator[tuple[str, Any]]:
    """examples/hostproject copied, migrated, with user alice, under uvicorn; yields its
    URL and ``manage(*args)``. ``REDIS_URL=None``: the embedded store."""
    project = tmp_path / "hostproject"
    shutil.copytree(EXAMPLE, project)
    _add_a_drf_view(project / "hostproject")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHAPI_", "DJANGO_"))}
    env.update(PYTHONPATH=str(ROOT), DJANGO_SETTINGS_MODULE="hostproject.settings")
    env.pop("DATABASE_URL", None)
    for name, value in env_changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value

    def manage(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=project, env={**env, **extra},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    assert manage("migrate", "--noinput").returncode == 0
    made = manage(
        "createsuperuser", "--noinput", "--username", "alice", "--email", "alice@example.com",
        DJANGO_SUPERUSER_PASSWORD="s3cret-pass",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "hostproject.asgi:application",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=project, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline and server.poll() is None, "did not start"
            time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", manage
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=15)
        pidfile = project / "var" / "valkey.pid"
        if pidfile.exists():  # the embedded server, which nothing told to stop
            try:
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass


_DRF_VIEW = """
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from authapi.drf import JWTAuthentication


class Orders(APIView):
    authentication_classes = [JWTAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request):
        return Response({"user_id": request.auth["user_id"], "orders": []})
"""


def _add_a_drf_view(package: Path) -> None:
    """The host also has a DRF view, as a project moving over from simplejwt has."""
    (package / "drf_shop.py").write_text(_DRF_VIEW)
    with (package / "settings.py").open("a") as settings:
        settings.write('\nINSTALLED_APPS += ["rest_framework"]\n')
    with (package / "urls.py").open("a") as urls:
        urls.write(
            "\nfrom hostproject.drf_shop import Orders\n"
            'urlpatterns += [path("shop-drf/orders", Orders.as_view())]\n'
        )


@pytest.fixture(params=["redis-url", "embedded"])
def host(tmp_path: Path, request):
    # The embedded store is started on first use: there is no lifespan here.
    changes = {"REDIS_URL": None} if request.param == "embedded" else {}
    with running_host(tmp_path, **changes) as running:
        yield running


async def test_three_lines_in_a_startproject_project(host):
    url, manage = host
    check = manage("check")
    assert check.returncode == 0, check.stderr
    assert "System check identified no issues (0 silenced)." in check.stdout, check.stderr
    async with httpx.AsyncClient(base_url=url, timeout=15) as http:
        login = await http.post(
            "/api/auth/login", data={"username": "alice", "password": "s3cret-pass"}
        )
        assert login.status_code == 200, login.text
        pair = login.json()
        orders = await http.get("/shop/orders", headers=bearer(pair["access"]))
        assert orders.status_code == 200 and orders.json()["orders"] == []
        profile = await http.get("/shop/profile", headers=bearer(pair["access"]))
        assert profile.json() == {"username": "alice"}
        assert (await http.get("/shop/orders")).status_code == 401
        bad = await http.get("/shop/orders", headers=bearer("x.y.z"))
        assert bad.status_code == 401 and bad.json()["code"] == "token_not_valid"
        turned = await http.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
        assert turned.status_code == 200
        nxt = turned.json()
        out = await http.post(
            "/api/auth/logout", json={"refresh": nxt["refresh"]}, headers=bearer(nxt["access"])
        )
        assert out.status_code == 204
        assert (await http.get("/shop/orders", headers=bearer(nxt["access"]))).status_code == 401
        alias = await http.post(
            "/api/token/", json={"username": "alice", "password": "s3cret-pass"}
        )
        assert alias.status_code == 200
        for path in ("/health", "/api/docs", "/api/openapi.json"):
            assert (await http.get(path)).status_code == 200, path
        # the docs UI is not a blank page: its script and CSS answer, with no /static/ served
        page = (await http.get("/api/docs")).text
        assets = re.findall(r'(?:src|href)="([^"]+)"', page)
        assert {a.rsplit("/", 1)[-1] for a in assets} >= {"swagger-ui-bundle.js", "swagger-ui.css"}
        for asset in assets:
            fetched = await http.get(asset)
            assert fetched.status_code == 200 and fetched.content, asset


def test_a_dead_store_is_logged_once_without_its_password(tmp_path: Path):
    """Plain Django's handler under uvicorn: no "Service Unavailable: <path>" per request,
    one line naming the store and its error, never the URL's password."""
    project = tmp_path / "hostproject"
    shutil.copytree(EXAMPLE, project)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHAPI_", "DJANGO_"))}
    dead = free_port()  # nothing listens there: a store that is down
    env.update(
        PYTHONPATH=str(ROOT),
        DJANGO_SETTINGS_MODULE="hostproject.settings",
        REDIS_URL=f"redis://:hunter2-secret@127.0.0.1:{dead}/0",
    )
    env.pop("DATABASE_URL", None)
    port = free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "hostproject.asgi:application",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "did not start"
                time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=15) as http:
            for _ in range(4):
                login = http.post("/api/auth/login", data={"username": "a", "password": "b"})
                assert login.status_code == 503, login.text
            assert http.get("/health").status_code == 503
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=15)
    text = log_path.read_text()
    assert "hunter2-secret" not in text
    assert "Service Unavailable" not in text, text
    causes = [line for line in text.splitlines() if "store unavailable" in line]
    assert len(causes) == 1, text
    assert f"redis://:***@127.0.0.1:{dead}/0" in causes[0] and "ConnectionError" in causes[0]


_EXPIRED = """
from authapi import tokens
from django.contrib.auth import get_user_model
uid = get_user_model().objects.get(username="alice").pk
now = tokens.now()
payload = tokens.build("access", user_id=uid, sid="c2Vzc2lvbi1vZi1hbGljZQ", iat=now - 120,
                       exp=now - 60)
print(tokens.encode(payload))
"""


def pair_user_id(pair: dict) -> int:
    return int(jwt.decode(pair["access"], options={"verify_signature": False})["user_id"])


def _refused(answer: httpx.Response, kind: str, code: str | None, scheme: str = "Bearer") -> None:
    assert answer.status_code == 401, (kind, answer.status_code, answer.text)
    assert answer.headers["content-type"].startswith("application/json"), kind
    body = answer.json()
    assert body["detail"] and body.get("code") == code, (kind, body)
    assert answer.headers["WWW-Authenticate"].startswith(scheme), (kind, answer.headers)


async def test_every_bad_token_on_the_hosts_own_api_is_a_401_with_a_code(host):
    """The host's ``NinjaAPI(auth=jwt_bearer)`` has no handler of ours and DEBUG is on (a
    500 would be Ninja's traceback page): every refusal is still our JSON 401."""
    url, manage = host
    minted = manage("shell", "-c", _EXPIRED)
    assert minted.returncode == 0, minted.stderr
    expired = minted.stdout.strip().splitlines()[-1]
    async with httpx.AsyncClient(base_url=url, timeout=15) as http:
        first = (await http.get("/shop/orders")).status_code  # the API's very first answer
        assert first == 401
        body = {"username": "alice", "password": "s3cret-pass"}
        pair = (await http.post("/api/auth/login", json=body)).json()
        gone = (await http.post("/api/auth/login", json=body)).json()
        out = await http.post("/api/auth/logout", json={"refresh": gone["refresh"]})
        assert out.status_code == 204
        key = dpop_client.Key()
        proof = key.proof("POST", f"{url}/api/auth/login")
        bound = (await http.post("/api/auth/login", json=body, headers={"DPoP": proof})).json()
        head, claims, sig = pair["access"].split(".")
        headers_of = {
            "no credentials": ({}, "not_authenticated", "Bearer"),
            "another scheme": ({"Authorization": "Basic YTpi"}, "not_authenticated", "Bearer"),
            "malformed": (bearer("not-a-jwt"), "token_not_valid", "Bearer"),
            "tampered": (bearer(f"{head}.{claims}.{sig[:-4]}AAAA"), "token_not_valid", "Bearer"),
            "refresh as access": (bearer(pair["refresh"]), "token_not_valid", "Bearer"),
            "expired": (bearer(expired), "token_not_valid", "Bearer"),
            "revoked": (bearer(gone["access"]), "token_not_valid", "Bearer"),
            "bound, as Bearer": (bearer(bound["access"]), "invalid_dpop_proof", "DPoP"),
            "bound, no proof": (
                {"Authorization": f"DPoP {bound['access']}"}, "invalid_dpop_proof", "DPoP"
            ),
        }  # fmt: skip
        for route in ("/shop/orders", "/shop/basket", "/shop-drf/orders"):  # async, sync, DRF
            for kind, (headers, ours, scheme) in headers_of.items():
                code: str | None = ours
                if route.startswith("/shop-drf"):  # simplejwt's answers, DRF's for none
                    code = None if ours == "not_authenticated" else "token_not_valid"
                _refused(await http.get(route, headers=headers), f"{route} {kind}", code, scheme)
            good = await http.get(route, headers=bearer(pair["access"]))
            assert good.status_code == 200, (route, good.text)
            assert good.json()["user_id"] == pair_user_id(pair), route
            proved = await http.get(
                route,
                headers={
                    "Authorization": f"DPoP {bound['access']}",
                    "DPoP": key.proof("GET", f"{url}{route}", token=bound["access"]),
                },
            )
            assert proved.status_code == 200, proved.text
        # The refusals ended nothing: the pair still refreshes.
        turned = await http.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
        assert turned.status_code == 200, turned.text


async def test_the_store_down_is_a_503_with_retry_after_on_the_hosts_own_api(tmp_path):
    store = RedisServer()
    store.start()
    try:
        with running_host(tmp_path, REDIS_URL=store.url) as (url, _manage):
            async with httpx.AsyncClient(base_url=url, timeout=15) as http:
                body = {"username": "alice", "password": "s3cret-pass"}
                pair = (await http.post("/api/auth/login", json=body)).json()
                store.stop()  # ours: started above
                for route in ("/shop/orders", "/shop/basket", "/shop-drf/orders"):
                    down = await http.get(route, headers=bearer(pair["access"]))
                    assert down.status_code == 503, down.text
                    assert down.json()["code"] == "service_unavailable"
                    assert int(down.headers["Retry-After"]) > 0
                store.start()  # same port, same data: the session is back
                deadline = time.monotonic() + 20
                while (back := await http.get("/shop/orders", headers=bearer(pair["access"]))
                       ).status_code == 503 and time.monotonic() < deadline:  # fmt: skip
                    await asyncio.sleep(0.2)
                assert back.status_code == 200, back.text
    finally:
        store.stop()

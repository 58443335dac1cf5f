"""examples/hostproject: `django-admin startproject` plus authapi's three lines, driven over
HTTP: log in, call the host's own guarded routes, refresh, log out. Django's stock
middleware, no silenced checks, no authapi ASGI wrapper."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, bearer
from tests.redis_server import free_port

EXAMPLE = ROOT / "examples" / "hostproject"


@pytest.fixture(params=["redis-url", "embedded"])
def host(tmp_path: Path, request):
    project = tmp_path / "hostproject"
    shutil.copytree(EXAMPLE, project)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHAPI_", "DJANGO_"))}
    env.update(PYTHONPATH=str(ROOT), DJANGO_SETTINGS_MODULE="hostproject.settings")
    env.pop("DATABASE_URL", None)
    if request.param == "embedded":  # started on first use: there is no lifespan here
        env.pop("REDIS_URL", None)

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

"""Over real sockets against real uvicorn servers: serve() leaves a host's own views to
Django's handler and middleware; slow readers and a login flood hold nothing that
/health, refresh and the access check need; a WebSocket is refused without a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import PASSWORD, ROOT, LiveServer
from tests.hostile import everyday_medians, login_flood, slow_readers

QUICK = 0.5  # seconds: the median the everyday requests keep under attack
HOST_APP = "tests.host.asgi:application"
HOST_ENV = {"DJANGO_SETTINGS_MODULE": "tests.host.settings"}


def _login(url: str, username: str) -> dict:
    response = httpx.post(
        f"{url}/api/auth/login", json={"username": username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return response.json()


# --- a host project's own views keep Django's handler and settings.MIDDLEWARE -------------


@pytest.fixture
def host_server():
    with LiveServer(env=HOST_ENV, app=HOST_APP) as server:
        yield server


def test_a_host_view_refuses_a_post_without_its_csrf_token(host_server):
    with httpx.Client(base_url=host_server.url) as http:
        assert http.get("/forms/open").status_code == 200
        refused = http.post("/forms/open", data={"x": "1"})
    assert refused.status_code == 403  # CsrfViewMiddleware, as under Django's own handler
    assert b"CSRF" in refused.content


def test_a_host_view_has_its_session_user_and_login_requirement(host_server):
    with httpx.Client(base_url=host_server.url) as http:
        anonymous = http.get("/accounts/profile")
        assert anonymous.status_code == 302  # LoginRequiredMiddleware
        assert anonymous.headers["location"].startswith("/backoffice/login/")
        assert http.get("/forms/open").json()["user"] == "AnonymousUser"  # request.user


def test_the_hosts_own_guard_and_its_admin_elsewhere_still_run(host_server):
    with httpx.Client(base_url=host_server.url) as http:
        guarded = http.get("/internal/")
        assert guarded.status_code == 403 and guarded.text == "refused by the host's guard"
        admin = http.get("/backoffice/login/")
        assert admin.status_code == 200 and "csrfmiddlewaretoken" in admin.text
        assert "sessionid" not in http.cookies and "csrftoken" in http.cookies


async def test_the_service_itself_works_beside_the_hosts_middleware(host_server, user):
    pair = _login(host_server.url, user.username)
    async with httpx.AsyncClient(base_url=host_server.url) as http:
        me = await http.get("/api/auth/me", headers={"Authorization": f"Bearer {pair['access']}"})
        assert me.status_code == 200 and me.json()["username"] == user.username
        assert (await http.get("/health")).status_code == 200
        # the service's JSON errors, not the host's HTML or its login redirect
        missing = await http.post("/api/auth/refresh", json={})
        assert missing.status_code in (400, 401, 422) and "code" in missing.json()


# --- hostile clients ---------------------------------------------------------------------


async def test_slow_readers_of_a_large_file_hold_nothing_the_rest_needs(live_server, user):
    sessions = [_login(live_server.url, user.username) for _ in range(3)]
    with slow_readers(live_server.port) as readers:
        assert readers == 10
        medians = await everyday_medians(live_server.url, sessions)
    assert max(medians.values()) < QUICK, medians


async def test_a_flood_of_failing_logins_holds_nothing_the_rest_needs(user):
    import asyncio

    with LiveServer(env={"DJANGO_SETTINGS_MODULE": "tests.slow_hashing"}) as server:
        sessions = [_login(server.url, user.username) for _ in range(5)]
        flood = asyncio.ensure_future(login_flood(server.url))
        await asyncio.sleep(0.5)  # the flood is queued on the hashing pool: 4 s of work
        medians = await everyday_medians(server.url, sessions, waves=2)
        assert not flood.done()  # measured while it lasted
        statuses = await flood
    assert statuses == [401] * 40  # every one checked, none refused for load
    assert max(medians.values()) < QUICK, medians


# --- WebSockets ----------------------------------------------------------------------------


def _upgrade(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        return sock.recv(4096)


@pytest.mark.parametrize("ws", ["websockets", "none"])
def test_a_websocket_upgrade_is_refused_without_a_traceback(ws):
    from tests.redis_server import free_port

    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="authapi-ws-", suffix=".log", delete=False)
    command = [sys.executable, "-m", "uvicorn", "project.asgi:application", "--host", "127.0.0.1",
               "--port", str(port), "--ws", ws]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None and time.monotonic() < deadline
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        for path in ("/api/auth/me", "/health", "/admin/", "/nowhere"):
            status_line = _upgrade(port, path).split(b"\r\n", 1)[0]
            if ws == "websockets":
                assert status_line == b"HTTP/1.1 403 Forbidden", (path, status_line)
            else:  # no WebSocket server at all: an ordinary request, answered as one
                assert status_line.split()[1] in (b"200", b"302", b"401", b"404"), status_line
    finally:
        server.terminate()
        server.wait(timeout=15)
    output = Path(log.name).read_text()
    Path(log.name).unlink()
    assert "Traceback" not in output and "Exception" not in output, output


def test_every_launch_line_turns_websockets_off():
    serve = (ROOT / "scripts" / "serve").read_text().replace("\\\n", " ")
    assert "--ws none" in next(x for x in serve.splitlines() if "uvicorn project.asgi" in x)
    assert '"--ws", "none"' in (ROOT / "Dockerfile").read_text()
    assert "--ws none" in (ROOT / "compose.yaml").read_text()  # the image's CMD, described
    assert "--no-proxy-headers --ws none" in (ROOT / "README.md").read_text()

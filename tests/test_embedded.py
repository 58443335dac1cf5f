"""The embedded valkey-server: one per data folder, shared by every process, data kept.

These tests start their own embedded servers in temporary folders; the session's test
server is left alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from authapi import embedded
from tests.conftest import PASSWORD, ROOT, LiveServer


def _pid(data_dir: Path) -> int:
    return int((data_dir / "valkey.pid").read_text().strip())


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not running; ours are daemonized (reparented), so this is a real answer
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split()[2] != "Z"


def _wait_gone(pid: int, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _running(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def data_dir():
    path = Path(tempfile.mkdtemp(prefix="authapi-emb-"))
    yield path
    embedded.release(path.resolve())
    pidfile = path / "valkey.pid"
    if pidfile.exists():  # never leave a server behind, whatever the test did
        try:
            os.kill(_pid(path), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def _command(url: str, *args: str) -> bytes:
    return embedded._command(Path(url.removeprefix("unix://")), *args)


def test_ensure_starts_one_server_and_reuses_it(data_dir):
    url = embedded.ensure(data_dir)
    assert url.startswith("unix://")
    sock = Path(url.removeprefix("unix://"))
    assert sock.is_socket()
    assert oct(sock.stat().st_mode & 0o777) == "0o700"
    pid = _pid(data_dir)
    assert _running(pid)
    assert embedded.ensure(data_dir) == url
    assert _pid(data_dir) == pid
    config = _command(url, "CONFIG", "GET", "appendonly")
    assert b"yes" in config


def test_second_process_shares_the_server_and_does_not_stop_it(data_dir):
    embedded.ensure(data_dir)
    pid = _pid(data_dir)
    script = (
        "import sys; from pathlib import Path; from authapi import embedded; "
        "print(embedded.ensure(Path(sys.argv[1])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(data_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip().startswith("unix://")
    assert _pid(data_dir) == pid
    # the child exited (released) but we still use the server: it keeps running
    assert _running(pid)


def test_data_survives_release_and_restart(data_dir):
    url = embedded.ensure(data_dir)
    assert _command(url, "SET", "revoked", "yes").startswith(b"+OK")
    pid = _pid(data_dir)
    embedded.release(data_dir.resolve())
    assert _wait_gone(pid), "the last user did not shut the server down"
    url = embedded.ensure(data_dir)
    assert _pid(data_dir) != pid
    assert b"yes" in _command(url, "GET", "revoked")


def test_a_killed_server_is_started_again(data_dir):
    url = embedded.ensure(data_dir)
    pid = _pid(data_dir)
    os.kill(pid, signal.SIGKILL)
    assert _wait_gone(pid)
    assert embedded.ensure(data_dir) == url
    assert _pid(data_dir) != pid
    assert _command(url, "PING").startswith(b"+PONG")


def test_long_data_paths_get_a_short_socket(tmp_path):
    deep = tmp_path / ("d" * 120)
    path = embedded.socket_path(deep)
    assert len(str(path)) < 100 and str(path).startswith("/tmp/authapi-")
    assert embedded.socket_path(deep) == path


def _valkeys_for(data_dir: Path) -> list[int]:
    """Running valkey-servers working in ``data_dir`` (they chdir to --dir)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            exe, cwd = os.readlink(proc / "exe"), os.readlink(proc / "cwd")
        except OSError:
            continue
        if exe.endswith("valkey-server") and Path(cwd) == data_dir.resolve():
            if _running(int(proc.name)):
                found.append(int(proc.name))
    return found


async def test_uvicorn_workers_share_one_embedded_server(make_user, data_dir):
    """REDIS_URL unset, two workers: one valkey-server; SIGTERM to uvicorn stops it too."""
    user = await make_user()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["AUTHAPI_DATA_DIR"] = str(data_dir)
    server = LiveServer("--workers", "2")
    server.env = env
    with server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            pairs = []
            for _ in range(8):  # new connections: both workers get some
                async with httpx.AsyncClient(base_url=server.url) as fresh:
                    response = await fresh.post(
                        "/api/auth/login", json={"username": user.username, "password": PASSWORD}
                    )
                assert response.status_code == 200, response.text
                pairs.append(response.json())
            for pair in pairs:
                me = await http.get(
                    "/api/auth/me", headers={"Authorization": f"Bearer {pair['access']}"}
                )
                assert me.status_code == 200
            assert (await http.get("/health")).status_code == 200
        servers = _valkeys_for(data_dir)
        assert servers == [_pid(data_dir)], servers
        assert (data_dir / "appendonlydir").is_dir()
    assert _wait_gone(servers[0]), "valkey-server outlived the uvicorn that started it"


async def test_service_restarts_a_killed_embedded_server(make_user, data_dir):
    """The embedded server is killed under a running service: 503, then it is back by itself."""
    user = await make_user()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["AUTHAPI_DATA_DIR"] = str(data_dir)
    server = LiveServer()
    server.env = env
    with server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            body = {"username": user.username, "password": PASSWORD}
            pair = (await http.post("/api/auth/login", json=body)).json()
            auth = {"Authorization": f"Bearer {pair['access']}"}
            pid = _pid(data_dir)
            os.kill(pid, signal.SIGKILL)
            assert _wait_gone(pid)
            statuses = []
            for _ in range(3):
                statuses.append((await http.get("/api/auth/me", headers=auth)).status_code)
            assert set(statuses) <= {200, 503} and statuses[-1] == 200, statuses
            assert _pid(data_dir) != pid
            # the AOF (everysec) kept the session: the token still works, logout still bites
            out = await http.post("/api/auth/logout", json={"refresh": pair["refresh"]})
            assert out.status_code == 204
            assert (await http.get("/api/auth/me", headers=auth)).status_code == 401

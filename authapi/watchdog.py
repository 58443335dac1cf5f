"""Stops the embedded store once no process uses it, however the last one ended.

Every process that uses the store holds a shared ``flock`` on ``valkey.users`` for its
life (:func:`authapi.embedded.ensure`); the kernel drops it when the process ends, by
SIGTERM, SIGKILL or a crash alike, with no hook of ours having to run. This watchdog, one
per data folder, tries for an exclusive lock on that file every :data:`POLL` seconds. A
process that is stalled (SIGSTOP) still holds its lock: stalled is not dead.

When it gets the lock nobody uses the store. It then takes ``valkey.lock``, which a new
user must hold to join (and to start a store), checks again, sends SIGTERM to the store
(a process holding ``valkey.owner`` open: never a pid read from a file alone) and waits
until the owner lock is free before it lets go of ``valkey.lock``. So a user arriving at
that moment waits, then finds no store and starts a new one: never a store that dies
under it. A store that is itself stopped (SIGSTOP) is not signalled; it is stopped once
it runs again.

Standard library only: embedded.py runs it as ``python -I -S watchdog.py DATA_DIR``. The
first process claims ``valkey.watchdog`` (exclusive; a second watchdog exits at once),
forks the watchdog proper into its own session and exits, so the service never reaps it
and no signal sent to the service's process group reaches it.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import time
from pathlib import Path
from typing import IO

POLL = 1.0
STOP_WAIT = 10.0
CLAIM_WAIT = 1.0

LOCK, USERS, OWNER, WATCHDOG = "valkey.lock", "valkey.users", "valkey.owner", "valkey.watchdog"


def open_private(path: Path) -> IO[str]:
    """Open (create 0600) a file used only for its lock."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a")


def try_lock(fh: IO[str] | int, kind: int = fcntl.LOCK_EX) -> bool:
    try:
        fcntl.flock(fh, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def unused(data_dir: Path) -> bool:
    """Whether no process holds its shared lock on ``valkey.users`` (a moment's probe)."""
    with open_private(data_dir / USERS) as probe:
        return try_lock(probe)


def owner_free(data_dir: Path) -> bool:
    """Whether no store process holds ``valkey.owner``. Call with ``valkey.lock`` held:
    the probe holds the owner lock for a moment, which must not meet a start."""
    with open_private(data_dir / OWNER) as probe:
        return try_lock(probe)


def holders(path: Path) -> list[int]:
    """Pids of the processes (ours to see) that have ``path`` open."""
    target = os.stat(path)
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            links = [entry.path for entry in os.scandir(proc / "fd")]
        except OSError:
            continue  # gone meanwhile, or not ours
        if any(_names(link, str(path), target) for link in links):
            found.append(int(proc.name))
    return found


def _names(link: str, path: str, target: os.stat_result) -> bool:
    """Whether the fd ``link`` (/proc/PID/fd/N) is ``path`` itself (an fd closed meanwhile
    is not)."""
    try:
        if os.readlink(link) != path:
            return False
        info = os.stat(link)
    except OSError:
        return False
    return (info.st_dev, info.st_ino) == (target.st_dev, target.st_ino)


def servers(data_dir: Path) -> list[int]:
    """The store's server process(es): holders of ``valkey.owner`` that are the pid in
    ``valkey.pid`` or carry valkey's process title (``... unixsocket:PATH``). Never a
    process that only has the file open for a moment to probe its lock (a service's
    ``server_lives()``, a test); the AOF rewrite child goes with its parent."""
    try:
        named = int((data_dir / "valkey.pid").read_text().strip())
    except (OSError, ValueError):
        named = None
    found = []
    for pid in holders(data_dir / OWNER):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if pid == named or b"unixsocket:" in title:
            found.append(pid)
    return found


def _stopped(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("T", "t")


def stop(data_dir: Path) -> bool:
    """SIGTERM the store (its owner-lock holders) and wait until it is gone; True if it is.

    ``valkey.lock`` held by the caller. A store that is stopped (SIGSTOP) is left alone.
    """
    pids = servers(data_dir)
    if any(_stopped(pid) for pid in pids):
        return False
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)  # valkey: fsync the AOF, remove socket and pid file
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_WAIT
    while time.monotonic() < deadline:
        if owner_free(data_dir):
            return True
        time.sleep(0.05)
    return False


def _step(data_dir: Path, mine: IO[str]) -> bool:
    """One look: True when the watch is over (no user, no store). ``mine`` is closed
    before ``valkey.lock`` is let go, so a user who starts a store next spawns a new
    watchdog that can claim the folder."""
    if not unused(data_dir):
        return False
    with open_private(data_dir / LOCK) as start_lock:
        fcntl.flock(start_lock, fcntl.LOCK_EX)
        with open_private(data_dir / USERS) as users:
            if not try_lock(users):
                return False  # a user joined meanwhile
            if owner_free(data_dir) or stop(data_dir):
                mine.close()
                return True
    return False  # the store is stopped (SIGSTOP) or slow to go: look again


def claim(data_dir: Path) -> IO[str] | None:
    """The exclusive lock on ``valkey.watchdog``, or None while another watchdog holds it.

    A user's probe (:func:`watched`) holds a shared lock for a moment: retried."""
    mine = open_private(data_dir / WATCHDOG)
    deadline = time.monotonic() + CLAIM_WAIT
    while not try_lock(mine):
        if time.monotonic() > deadline:
            mine.close()
            return None
        time.sleep(0.02)
    return mine


def watched(data_dir: Path) -> bool:
    """Whether a watchdog holds ``data_dir``."""
    with open_private(data_dir / WATCHDOG) as probe:
        return not try_lock(probe, fcntl.LOCK_SH)


def watch(data_dir: Path, mine: IO[str]) -> None:
    """Poll until nobody uses the store, stop it, return."""
    try:
        while True:
            time.sleep(POLL)
            if _step(data_dir, mine):
                return
    except OSError:
        return  # the data folder is gone: nothing left to watch
    finally:
        mine.close()


def main(argv: list[str]) -> int:
    data_dir = Path(argv[1])
    mine = claim(data_dir)
    if mine is None:
        return 0  # another watchdog watches this folder
    if os.fork():
        os._exit(0)  # the lock goes on with the child: the caller need not reap it
    os.setsid()
    watch(data_dir, mine)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

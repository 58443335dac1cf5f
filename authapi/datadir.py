"""The data folder (``AUTHAPI_DATA_DIR``): private to the user who runs the service.

It holds the SQLite database, the generated secret key, the embedded store's password,
AOF, socket, pid and lock files: anyone who can read it can mint tokens or read every
session. So the folder is 0700 and every file in it 0600, also when it already existed
with looser modes (we tighten what we own and refuse to start on what we do not).
"""

from __future__ import annotations

import os
import secrets
import stat
import time
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

DIR_MODE = 0o700
FILE_MODE = 0o600


def _refuse(path: Path, why: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(
        f"AUTHAPI_DATA_DIR: {path} {why}. It must belong to the user running the service "
        f"(uid {os.getuid()}): fix it with `chown -R $(id -u) {path} && chmod 700 {path}`, "
        "or point AUTHAPI_DATA_DIR at another folder."
    )


def prepare(path: Path) -> Path:
    """Create ``path`` 0700 (or tighten it and what it holds); return it resolved."""
    path = Path(path)
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    path = path.resolve()
    info = path.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise _refuse(path, "is not a folder")
    if info.st_uid != os.getuid():
        raise _refuse(path, f"belongs to uid {info.st_uid}")
    if stat.S_IMODE(info.st_mode) != DIR_MODE:
        os.chmod(path, DIR_MODE)
    _tighten(path)
    return path


def _tighten(folder: Path) -> None:
    """Tighten what ``folder`` holds. A running store writes and renames files in it
    meanwhile (an AOF rewrite's temp file): one gone before it is looked at is skipped."""
    with os.scandir(folder) as entries:
        found = list(entries)
    for entry in found:
        try:
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                continue  # never follow a link out of the folder
            if info.st_uid != os.getuid():
                raise _refuse(Path(entry.path), f"belongs to uid {info.st_uid}")
            wanted = DIR_MODE if stat.S_ISDIR(info.st_mode) else FILE_MODE
            if stat.S_IMODE(info.st_mode) & ~wanted:
                os.chmod(entry.path, stat.S_IMODE(info.st_mode) & wanted)
            if stat.S_ISDIR(info.st_mode):
                _tighten(Path(entry.path))
        except FileNotFoundError:
            continue


def touch_private(path: Path) -> Path:
    """Create ``path`` empty with mode 0600 unless it exists (then tighten it)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        if stat.S_IMODE(path.stat().st_mode) & ~FILE_MODE:
            os.chmod(path, FILE_MODE)
    return path


def secret(path: Path, nbytes: int = 50) -> str:
    """Read, or create once with mode 0600, a random secret kept in ``path``."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    value = secrets.token_urlsafe(nbytes)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:  # another process won the race: wait for its write
        for _ in range(200):
            found = path.read_text().strip()
            if found:
                return found
            time.sleep(0.005)
        raise ImproperlyConfigured(f"{path} is empty: delete it to make a new one.") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value

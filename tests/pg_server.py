"""A throwaway PostgreSQL server from the machine's own binaries, on a free loopback port.

PostgreSQL refuses to run as root, so as root (CI, containers) ``initdb`` and ``pg_ctl`` run
as the ``postgres`` system user through ``runuser``, in a fresh temporary folder it owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.redis_server import free_port

BINARIES = ("initdb", "pg_ctl")
SYSTEM_USER = "postgres"


def _has_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in BINARIES)


def _version(path: str) -> tuple[int, ...]:
    name = Path(path).parent.name  # /usr/lib/postgresql/<version>/bin
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def find_bindir() -> tuple[Path | None, str]:
    """The folder holding initdb and pg_ctl, or None and what was looked at in vain.

    Looked for on the PATH, then in ``pg_config --bindir``, then in the newest
    ``/usr/lib/postgresql/*/bin`` (Debian keeps them off the PATH).
    """
    tried = []
    found = [shutil.which(name) for name in BINARIES]
    if all(found):
        initdb = Path(str(found[0]))
        for bindir in (initdb.resolve().parent, initdb.parent):
            if _has_binaries(bindir):
                return bindir, ""
        tried.append("initdb and pg_ctl on PATH but in different folders")
    else:
        missing = ", ".join(name for name, path in zip(BINARIES, found, strict=True) if not path)
        tried.append(f"not on PATH ({missing})")
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        tried.append("no pg_config")
    else:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            tried.append(f"pg_config --bindir failed ({exc})")
        else:
            if out and _has_binaries(Path(out)):
                return Path(out), ""
            tried.append(f"not in pg_config --bindir ({out or 'empty'})")
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True):
        if _has_binaries(Path(candidate)):
            return Path(candidate), ""
    tried.append("not in /usr/lib/postgresql/*/bin")
    return None, "; ".join(tried)


class PostgresServer:
    """initdb, start and stop one cluster; only this server, only on 127.0.0.1."""

    def __init__(self, database: str = "authapi_test") -> None:
        self.bindir, self.missing = find_bindir()
        self.database = database
        self.port = free_port()
        self.dir: Path | None = None
        self.running = False

    def available(self) -> bool:
        return self.bindir is not None

    @property
    def reason(self) -> str:
        """Why the server cannot run here (empty when it can)."""
        if self.available():
            return ""
        return f"PostgreSQL binaries ({', '.join(BINARIES)}) not found: {self.missing}"

    @property
    def url(self) -> str:
        return f"postgres://{SYSTEM_USER}@127.0.0.1:{self.port}/{self.database}"

    @property
    def data(self) -> Path:
        assert self.dir is not None
        return self.dir / "data"

    def _run(self, name: str, *args: str) -> None:
        assert self.bindir is not None and self.dir is not None
        command = [str(self.bindir / name), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SYSTEM_USER, "--", *command]
        result = subprocess.run(
            command, cwd=self.dir, capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            log = self.dir / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{name} exited with {result.returncode}:\n{result.stdout}{result.stderr}{tail}"
            )

    def start(self) -> None:
        """A new cluster (trust auth, durability off for speed) and the test database."""
        if not self.available():
            raise RuntimeError(self.reason)
        self.dir = Path(tempfile.mkdtemp(prefix="authapi-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.dir, user=SYSTEM_USER, group=SYSTEM_USER)
        self._run("initdb", "--pgdata", str(self.data), "--username", SYSTEM_USER,
                  "--auth", "trust", "--encoding", "UTF8", "--no-locale", "--no-sync")  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run("pg_ctl", "start", "--pgdata", str(self.data), "--wait", "--timeout", "60",
                  "--log", str(self.dir / "server.log"), "--options", options)  # fmt: skip
        self.running = True
        self.create_database(self.database)

    def create_database(self, name: str) -> None:
        import psycopg

        admin = f"postgres://{SYSTEM_USER}@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def stop(self) -> None:
        """Stop this server (fast: open connections are cut) and remove its folder."""
        if self.running:
            self.running = False
            self._run("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", "fast", "--wait")
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

"""Test session: a real valkey-server (or REDIS_URL), a fresh database, httpx clients.

The database is a new SQLite file, or with ``AUTHAPI_TEST_DATABASE=postgres`` a throwaway
PostgreSQL server started from the machine's binaries (tests/pg_server.py).
Everything that Django reads at start-up is set here, before Django loads.
"""

from __future__ import annotations

import atexit
import itertools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Self

import httpx
import pytest

# Read before the AUTHAPI_* variables go: "sqlite" (the default) or "postgres".
TEST_DATABASE = os.environ.get("AUTHAPI_TEST_DATABASE") or "sqlite"
if TEST_DATABASE not in ("sqlite", "postgres"):
    raise RuntimeError(f"AUTHAPI_TEST_DATABASE={TEST_DATABASE!r}: use 'sqlite' or 'postgres'")
for _name in [n for n in os.environ if n.startswith("AUTHAPI_")]:
    del os.environ[_name]
ROOT = Path(__file__).resolve().parent.parent
_tmp = Path(tempfile.mkdtemp(prefix="authapi-tests-"))
os.environ["AUTHAPI_DATA_DIR"] = str(_tmp)
os.environ["DATABASE_URL"] = f"sqlite:///{_tmp / 'test.sqlite3'}"
os.environ["DJANGO_SECRET_KEY"] = "tests-only-secret-key-" + "x" * 40
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
os.environ.pop("DJANGO_DEBUG", None)

from tests.pg_server import PostgresServer  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

pg_server: PostgresServer | None = None
# Set when the PostgreSQL run cannot happen here: every test is then skipped with it
# (Django still loads, on the SQLite file, so that collection works).
POSTGRES_MISSING = ""
if TEST_DATABASE == "postgres":
    pg_server = PostgresServer()
    if pg_server.available():
        # Also stopped when start-up fails past this point; stop() is idempotent.
        atexit.register(pg_server.stop)
        pg_server.start()
        os.environ["DATABASE_URL"] = pg_server.url  # LiveServer processes inherit it
    else:
        POSTGRES_MISSING = pg_server.reason
        pg_server = None

EXTERNAL_REDIS = os.environ.get("REDIS_URL")
redis_server: RedisServer | None = None
if not EXTERNAL_REDIS:
    redis_server = RedisServer()
    redis_server.start()
    os.environ["REDIS_URL"] = redis_server.url

import django  # noqa: E402

django.setup()

from asgiref.sync import SyncToAsync, sync_to_async  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db.backends.signals import connection_created  # noqa: E402

call_command("migrate", verbosity=0)

from project.asgi import application  # noqa: E402

PASSWORD = "correct horse battery"
_counter = itertools.count()


def pytest_collection_modifyitems(config, items):
    if POSTGRES_MISSING:
        skip = pytest.mark.skip(reason=POSTGRES_MISSING)
        for item in items:
            item.add_marker(skip)


def pytest_sessionfinish(session, exitstatus):
    if redis_server is not None:
        redis_server.stop()
    if pg_server is not None:
        from django.db import connections

        connections.close_all()
        pg_server.stop()


def _test_thread_connections():
    """Database connections that test code's own ``sync_to_async`` calls open.

    They run on asgiref's one thread-sensitive thread, and Django keeps each in the
    calling test's context, not the thread: no request ends them, so they stay open until
    that context is garbage, when psycopg warns (an error here). Closed after each test.
    """
    thread = SyncToAsync.single_thread_executor.submit(threading.get_ident).result()
    opened: list[Any] = []

    def note(sender, connection, **kwargs):
        if threading.get_ident() == thread:
            opened.append(connection)

    connection_created.connect(note, weak=False)
    return opened


_opened_by_tests = _test_thread_connections()


@pytest.fixture(autouse=True)
def _close_test_connections():
    yield
    while _opened_by_tests:
        wrapper = _opened_by_tests.pop()
        try:
            SyncToAsync.single_thread_executor.submit(wrapper.close).result(timeout=10)
        except Exception:  # a test left the thread busy or the database down: GC closes it
            pass


@pytest.fixture(scope="session")
def redis():
    """The test session's own server: fault tests stop and restart it."""
    if redis_server is None:
        pytest.skip("REDIS_URL points at an external server that tests must not stop")
    return redis_server


@pytest.fixture(scope="session")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        yield c


def _create_user(**fields):
    password = fields.pop("password", PASSWORD)
    username = fields.pop("username", None) or f"user{next(_counter)}-{time.time_ns()}"
    return get_user_model().objects.create_user(username=username, password=password, **fields)


@pytest.fixture
def make_user():
    """``await make_user(**fields)``: a new user with a unique name and password PASSWORD."""

    async def make(**fields):
        return await sync_to_async(_create_user)(**fields)

    return make


@pytest.fixture
async def user(make_user):
    return await make_user()


async def login(client: httpx.AsyncClient, user, password: str = PASSWORD, **kw) -> dict:
    response = await client.post(
        "/api/auth/login", json={"username": user.username, "password": password}, **kw
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def clock():
    """Move the service's clock (token times, session times): ``clock.shift(seconds)``."""
    from authapi import tokens

    class Clock:
        offset = 0.0

        def shift(self, seconds: float) -> None:
            self.offset += seconds

        def __call__(self) -> float:
            return time.time() + self.offset

    fake = Clock()
    original, tokens.clock = tokens.clock, fake
    try:
        yield fake
    finally:
        tokens.clock = original


@pytest.fixture
def authapi_settings():
    """``with authapi_settings(NAME=value, ...):`` run with those AUTHAPI settings."""
    from django.conf import settings
    from django.test import override_settings

    def override(**values):
        return override_settings(AUTHAPI={**settings.AUTHAPI, **values})

    return override


async def alive(client: httpx.AsyncClient, access: str) -> bool:
    """Whether an access token still gets through ``/api/auth/me`` (200, not 401)."""
    response = await client.get("/api/auth/me", headers=bearer(access))
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class LiveServer:
    """uvicorn serving the project on a free loopback port, in its own process.

    It shares the test session's environment: the same database file and Redis.
    """

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        app: str = "project.asgi:application",
        cwd: Path = ROOT,
    ) -> None:
        from tests.redis_server import free_port

        self.app = app
        self.cwd = cwd
        self.port = free_port()
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        command = [sys.executable, "-m", "uvicorn", self.app,
                   "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
                   *self.args]  # fmt: skip
        self.process = subprocess.Popen(command, env=self.env, cwd=self.cwd)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {self.process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("uvicorn did not start in 30 s")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def live_server() -> Iterator[LiveServer]:
    with LiveServer() as server:
        yield server

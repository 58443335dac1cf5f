"""The demo project with ``AUTHAPI_ACCOUNTS=on``, served live for the accounts tests.

It runs as a real uvicorn process on its own new database (a SQLite file, or a database of
the suite's PostgreSQL server on that leg), migrated with the accounts apps, against a
valkey-server of its own (``server.store``) unless ``env`` names a ``REDIS_URL``: user ids
start at 1 on every new database and our keys are per user id, so two servers on one
Redis would see each other's sessions. Mails go to a folder (Django's file backend), read
back by :meth:`mails`.
Passwords are hashed with the project's real hasher: these are the flows a user walks.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Self
from urllib.parse import unquote

import httpx

from tests import conftest
from tests.redis_server import RedisServer

PASSWORD = "Walk-the-flow-42"
FRONTEND = "http://app.example.test"
_names = itertools.count()


def new_database(folder: Path) -> str:
    name = f"accounts_{os.getpid()}_{next(_names)}"
    if conftest.pg_server is None:
        return f"sqlite:///{folder / name}.sqlite3"
    conftest.pg_server.create_database(name)
    return f"postgres://postgres@127.0.0.1:{conftest.pg_server.port}/{name}"


class AccountsServer:
    """``with AccountsServer() as server:`` a live accounts-enabled demo at ``server.url``."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="authapi-accounts-"))
        self.mail_dir = self.folder / "mail"
        self.mail_dir.mkdir()
        self.store = None if "REDIS_URL" in (env or {}) else RedisServer()
        self.env = {
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "AUTHAPI_ACCOUNTS": "on",
            "AUTHAPI_FRONTEND_URL": FRONTEND,
            "EMAIL_FILE_PATH": str(self.mail_dir),
            "DATABASE_URL": new_database(self.folder),
            "AUTHAPI_LOGIN_RATE_PER_IP": "0",
            **({"REDIS_URL": self.store.url} if self.store is not None else {}),
            **(env or {}),
        }
        self.server = conftest.LiveServer(*args, "--ws", "none", env=self.env)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def api(self) -> str:
        """allauth's headless app API."""
        return f"{self.server.url}/_allauth/app/v1"

    def manage(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``manage.py`` of the demo, on this server's database."""
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=conftest.ROOT,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )

    def shell(self, code: str) -> str:
        """Run Python in the demo's Django (``manage.py shell -c``); its output."""
        return self.manage("shell", "-c", code).stdout

    def __enter__(self) -> Self:
        if self.store is not None:
            self.store.start()
        try:
            self.manage("migrate", "--verbosity", "0")
            self.server.__enter__()
        except BaseException:
            self._stop_store()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.server.__exit__()
        finally:
            self._stop_store()

    def _stop_store(self) -> None:
        if self.store is not None:
            self.store.stop()
            shutil.rmtree(self.store.dir, ignore_errors=True)

    def mails(self) -> list[str]:
        """Every mail sent so far, oldest first (one file per connection, split)."""
        texts: list[str] = []
        for path in sorted(self.mail_dir.iterdir(), key=lambda p: p.stat().st_mtime_ns):
            texts += [decoded(part) for part in path.read_text().split("-" * 79) if part.strip()]
        return texts

    def wait_for_mail(self, to: str, count: int = 1, timeout: float = 10) -> str:
        """The ``count``-th mail to ``to``, waiting for it to be written."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sent = [m for m in self.mails() if re.search(rf"^To: {re.escape(to)}$", m, re.M)]
            if len(sent) >= count:
                return sent[count - 1]
            time.sleep(0.05)
        raise AssertionError(f"no mail #{count} to {to} in {timeout} s")

    def signup(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        """A verified account made by signup and the mailed link: allauth's ``meta`` of the
        verification, our pair of its session in it."""
        with httpx.Client(base_url=self.api, timeout=30) as client:
            pending = client.post("/auth/signup", json={"email": email, "password": password})
            assert pending.status_code == 401, pending.text
            key = self.link_key(self.wait_for_mail(email), "verify-email")
            done = client.post(
                "/auth/email/verify",
                json={"key": key},
                headers={"X-Session-Token": meta(pending)["session_token"]},
            )
        assert done.status_code == 200, done.text
        return meta(done)

    @staticmethod
    def link_key(mail: str, kind: str) -> str:
        """The key of the frontend link of ``kind`` in a mail: ``verify-email`` or
        ``password/reset/key``; as the web client would pass it on (URL-decoded)."""
        match = re.search(rf"{re.escape(FRONTEND)}/account/{kind}/(\S+)", mail)
        assert match, f"no {kind} link in:\n{mail}"
        return unquote(match.group(1))


def decoded(raw: str) -> str:
    """A mail as its headers and its plain text, transfer encoding undone: Django 6.1
    writes quoted-printable, which breaks long links across lines."""
    message = email.message_from_string(raw.lstrip("\n"), policy=email.policy.default)
    body = message.get_body(("plain",))
    text = body.get_content() if isinstance(body, EmailMessage) else ""
    headers = "".join(f"{name}: {value}\n" for name, value in message.items())
    return f"{headers}\n{text}"


def meta(answer: Any) -> dict[str, Any]:
    """allauth's ``meta`` of an answer (httpx response)."""
    body = answer.json()
    value: dict[str, Any] = body.get("meta") or {}
    return value

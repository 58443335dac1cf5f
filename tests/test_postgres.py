"""The service on PostgreSQL (psycopg 3): migrations, checks and the HTTP flow over uvicorn.

Only in the PostgreSQL run (``AUTHAPI_TEST_DATABASE=postgres``, the second pass of
scripts/test); the rest of the suite runs there too.
"""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import connection

from tests.conftest import PASSWORD, ROOT, TEST_DATABASE, LiveServer, bearer

pytestmark = pytest.mark.skipif(
    TEST_DATABASE != "postgres",
    reason="PostgreSQL only: run with AUTHAPI_TEST_DATABASE=postgres (scripts/test does)",
)


def _manage(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=dict(os.environ),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_session_database_is_postgresql():
    assert connection.vendor == "postgresql"
    assert os.environ["DATABASE_URL"].startswith("postgres://")
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        assert int(cursor.fetchone()[0]) >= 140000  # Django 5.2 needs PostgreSQL 14


def test_manage_migrate_and_check_on_database_url():
    migrate = _manage("migrate", "--noinput")  # already applied by conftest: a no-op
    assert migrate.returncode == 0, migrate.stderr
    assert "No migrations to apply." in migrate.stdout
    check = _manage("check", "--database", "default")
    assert check.returncode == 0, check.stderr
    shown = _manage("showmigrations", "auth")
    assert shown.returncode == 0 and "[ ]" not in shown.stdout, shown.stdout + shown.stderr


def _change_password(pk) -> None:
    user = get_user_model().objects.get(pk=pk)
    user.set_password("a different horse")
    user.save()


def _hash_behind_djangos_back(pk) -> None:
    """``QuerySet.update()`` sends no signal: only the next refresh's re-read can see it."""
    other = get_user_model()(password="")
    other.set_password("yet another horse")
    get_user_model().objects.filter(pk=pk).update(password=other.password)


async def _login(http: httpx.AsyncClient, username: str) -> dict:
    response = await http.post("/api/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("change", [_change_password, _hash_behind_djangos_back])
async def test_login_me_refresh_then_a_password_change_refuses_refresh(make_user, change):
    user = await make_user()
    with LiveServer() as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            pair = await _login(http, user.username)
            me = await http.get("/api/auth/me", headers=bearer(pair["access"]))
            assert me.status_code == 200, me.text
            assert me.json()["id"] == user.pk and me.json()["username"] == user.username

            refreshed = await http.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
            assert refreshed.status_code == 200, refreshed.text
            pair = refreshed.json()
            health = await http.get("/health")
            assert health.status_code == 200, health.text

            await sync_to_async(change)(user.pk)

            refused = await http.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
            assert refused.status_code == 401, refused.text
            assert refused.json()["code"] == "token_not_valid"
            again = await http.post(
                "/api/auth/login", json={"username": user.username, "password": PASSWORD}
            )
            assert again.status_code == 401, again.text

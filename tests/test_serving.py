"""Serving: no OS thread started per request, the API through its own lean middleware,
the admin through Django's stock stack, and Django's own deploy checks unsilenced."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
from typing import Any

import httpx
from asgiref import sync
from django.test import override_settings

from tests.conftest import PASSWORD, ROOT, bearer, login


async def test_an_authenticated_api_request_takes_no_thread_hop(client, user):
    pair = await login(client, user)
    calls = []
    original = sync.SyncToAsync.__call__

    async def counting(self, *args, **kwargs):
        calls.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await original(self, *args, **kwargs)

    sync.SyncToAsync.__call__ = counting  # type: ignore[method-assign]
    try:
        for _ in range(5):
            response = await client.get("/demo/async", headers=bearer(pair["access"]))
            assert response.status_code == 200
    finally:
        sync.SyncToAsync.__call__ = original  # type: ignore[method-assign]
    # what is left is Django's handler closing the response (request_finished): no
    # request_started receivers, no middleware, no auth
    assert calls == ["HttpResponseBase.close"] * 5


async def test_no_thread_is_started_per_request(client, user):
    pair = await login(client, user)
    for _ in range(3):  # warm up: the pool makes its threads once
        await client.get("/api/auth/me", headers=bearer(pair["access"]))
    started = []
    original = threading.Thread.start

    def counting(self):
        started.append(self.name)
        return original(self)

    threading.Thread.start = counting  # type: ignore[method-assign]
    try:
        for _ in range(20):  # /me reads the user: sync ORM work on a lent thread
            response = await client.get("/api/auth/me", headers=bearer(pair["access"]))
            assert response.status_code == 200
            assert (
                await client.get("/demo/sync", headers=bearer(pair["access"]))
            ).status_code == 200
    finally:
        threading.Thread.start = original  # type: ignore[method-assign]
    assert started == []


async def test_database_connections_outlive_requests(client, user):
    from django.db.backends.signals import connection_created

    pair = await login(client, user)
    for _ in range(3):  # warm up: each lent thread opens its connection once
        await client.get("/api/auth/me", headers=bearer(pair["access"]))
    opened = []

    def count(sender, connection, **kwargs):
        opened.append(threading.current_thread().name)

    connection_created.connect(count)
    try:
        for _ in range(10):  # one request at a time: the same lent thread, its connection
            response = await client.get("/api/auth/me", headers=bearer(pair["access"]))
            assert response.status_code == 200
    finally:
        connection_created.disconnect(count)
    assert opened == []


async def test_an_unknown_host_is_refused_as_json(client):
    response = await client.get("/api/auth/me", headers={"Host": "evil.example"})
    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_https_mode_redirects_and_sends_hsts():
    from authapi.serving import api_handler

    https = dict(
        SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
        SECURE_SSL_REDIRECT=True,
        SECURE_REDIRECT_EXEMPT=[r"^health$"],
        SECURE_HSTS_SECONDS=31536000,
    )
    with override_settings(**https):
        lean: Any = api_handler()
        transport = httpx.ASGITransport(app=lean, client=("127.0.0.1", 50011))
        client = httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")
        plain = await client.get("/api/auth/me")
        assert plain.status_code == 301
        assert plain.headers["Location"] == "https://127.0.0.1/api/auth/me"
        assert (await client.get("/health")).status_code == 200  # probes stay on http
        secure = await client.get("/api/auth/me", headers={"X-Forwarded-Proto": "https"})
        assert secure.status_code == 401
        assert secure.headers["Strict-Transport-Security"].startswith("max-age=31536000")
        await client.aclose()


async def test_the_app_works_without_the_fast_path(user):
    """serve() is a speed-up: Django's own handler and stock middleware serve the contract."""
    from django.core.asgi import get_asgi_application

    plain: Any = get_asgi_application()
    transport = httpx.ASGITransport(app=plain, client=("127.0.0.1", 50010))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        pair = await login(http, user)
        me = await http.get("/api/auth/me", headers=bearer(pair["access"]))
        assert me.status_code == 200 and me.json()["username"] == user.username
        turned = await http.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
        assert turned.status_code == 200
        replay = await http.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
        assert replay.status_code == 401
        bad = await http.get("/api/auth/me", headers=bearer("nonsense"))
        assert bad.status_code == 401 and bad.json()["code"] == "token_not_valid"


async def test_security_headers_are_still_set(client, user):
    pair = await login(client, user)
    response = await client.get("/api/auth/me", headers=bearer(pair["access"]))
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"


async def test_the_admin_logs_in_with_session_and_csrf(make_user):
    from project.asgi import application

    staff = await make_user(is_staff=True, is_superuser=True)
    transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 50003))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as browser:
        page = await browser.get("/admin/login/")
        assert page.status_code == 200 and "csrfmiddlewaretoken" in page.text
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert found is not None
        token = found[1]
        form = {"username": staff.username, "password": PASSWORD, "next": "/admin/"}
        forged = await browser.post("/admin/login/", data=form)  # no CSRF token
        assert forged.status_code == 403
        assert forged.json()["code"] == "permission_denied"
        done = await browser.post("/admin/login/", data={**form, "csrfmiddlewaretoken": token})
        assert done.status_code == 302 and done.headers["Location"] == "/admin/"
        index = await browser.get("/admin/")
        assert index.status_code == 200 and "Site administration" in index.text
        assert index.headers["X-Frame-Options"] == "DENY"


def _check_deploy(**env_vars: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHAPI_", "DJANGO_"))}
    env.update(DJANGO_SETTINGS_MODULE="project.settings",
               AUTHAPI_DATA_DIR=tempfile.mkdtemp(prefix="authapi-deploy-"), **env_vars)  # fmt: skip
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_django_deploy_checks_run_unsilenced():
    result = _check_deploy()
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for expected in ("security.W004", "security.W008", "security.W016", "authapi.W001"):
        assert expected in output, output
    assert "silenced" not in output or "(0 silenced)" in output, output


def test_the_documented_production_environment_passes_check_deploy():
    result = _check_deploy(
        DJANGO_HTTPS="1",
        DJANGO_SECRET_KEY="k" * 20 + "-production-secret-" + "z9" * 20,
        DJANGO_ALLOWED_HOSTS="auth.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout

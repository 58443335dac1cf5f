"""Response headers over the whole app: token answers are never cached, and every error
keeps the security headers of Django's SecurityMiddleware and XFrameOptionsMiddleware."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from django.test import override_settings

from tests.conftest import PASSWORD, bearer, login

SECURITY_HEADERS = ("X-Frame-Options", "Referrer-Policy", "Cross-Origin-Opener-Policy")
LOGIN_PATHS = ["/api/auth/login", "/api/token/"]
REFRESH_PATHS = ["/api/auth/refresh", "/api/token/refresh/"]


def _assert_never_cached(response) -> None:
    assert response.headers.get("Cache-Control") == "no-store", response.headers
    assert response.headers.get("Pragma") == "no-cache", response.headers


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("post", "/health", {}, 405),
        ("get", "/nope", {}, 404),
        ("get", "/api/auth/login", {}, 405),
        ("post", "/api/auth/login", {"json": {"username": "a", "password": "x" * 20000}}, 413),
        ("get", "/api/auth/me", {}, 401),
        ("post", "/api/auth/login", {"json": {"username": "a"}}, 422),
    ],
    ids=["health-405", "unknown-404", "ninja-405", "413", "me-401", "login-422"],
)
async def test_errors_keep_the_security_headers(client, debug, method, path, kwargs, status):
    with override_settings(DEBUG=debug):
        response = await client.request(method, path, **kwargs)
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    assert {"detail", "code"} <= set(response.json())
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
    for name in SECURITY_HEADERS:
        assert response.headers.get(name), name


async def test_json_errors_413_keeps_the_security_headers():
    """The middleware's own early 413 (Django's handler alone, no ASGI guard in front)."""
    from project.asgi import django_application

    app: Any = django_application  # django-stubs and httpx type the ASGI callable differently
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50010))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        response = await c.post(
            "/api/auth/login", content=b"{}", headers={"Content-Length": "20000"}
        )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
    for name in SECURITY_HEADERS:
        assert response.headers.get(name), name


async def test_converted_405_keeps_allow(client):
    response = await client.post("/health")
    assert response.status_code == 405 and response.headers["Allow"] == "GET"
    assert response.json()["code"] == "method_not_allowed"


@pytest.mark.parametrize("path", LOGIN_PATHS)
async def test_login_answers_are_never_cached(client, user, path):
    ok = await client.post(path, json={"username": user.username, "password": PASSWORD})
    assert ok.status_code == 200
    _assert_never_cached(ok)
    wrong = await client.post(path, json={"username": user.username, "password": "wrong"})
    assert wrong.status_code == 401
    _assert_never_cached(wrong)
    missing = await client.post(path, json={"username": user.username})
    assert missing.status_code == (400 if path.startswith("/api/token/") else 422)
    _assert_never_cached(missing)


@pytest.mark.parametrize("path", REFRESH_PATHS)
async def test_refresh_answers_are_never_cached(client, user, path):
    pair = await login(client, user)
    ok = await client.post(path, json={"refresh": pair["refresh"]})
    assert ok.status_code == 200
    _assert_never_cached(ok)
    spent = await client.post(path, json={"refresh": pair["refresh"]})
    assert spent.status_code == 401
    _assert_never_cached(spent)
    missing = await client.post(path, json={})
    assert missing.status_code == (400 if path.startswith("/api/token/") else 422)
    _assert_never_cached(missing)


@pytest.mark.parametrize("path", ["/api/auth/me", "/api/auth/sessions"])
async def test_user_data_is_never_cached(client, user, path):
    pair = await login(client, user)
    ok = await client.get(path, headers=bearer(pair["access"]))
    assert ok.status_code == 200
    assert ok.headers["Cache-Control"] == "no-store"
    refused = await client.get(path, headers=bearer("not-a-token"))
    assert refused.status_code == 401
    assert refused.headers["Cache-Control"] == "no-store"

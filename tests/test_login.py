"""POST /api/auth/login and its simplejwt alias: bodies, answers, bad input."""

from __future__ import annotations

import jwt
import pytest

from tests.conftest import PASSWORD, bearer, login


async def test_login_json_returns_pair(client, user):
    body = await login(client, user)
    assert set(body) == {"access", "refresh", "token_type", "expires_in", "refresh_expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["refresh_expires_in"] == 604800
    header = jwt.get_unverified_header(body["access"])
    assert header["alg"] == "HS256" and header["kid"]
    claims = jwt.decode(body["access"], options={"verify_signature": False})
    assert claims["token_type"] == "access" and claims["user_id"] == user.pk
    assert {"exp", "iat", "jti", "sid"} <= set(claims)
    refresh = jwt.decode(body["refresh"], options={"verify_signature": False})
    assert refresh["token_type"] == "refresh" and refresh["sid"] == claims["sid"]
    assert refresh["jti"] != claims["jti"]


async def test_login_form_body(client, user):
    response = await client.post(
        "/api/auth/login", data={"username": user.username, "password": PASSWORD}
    )
    assert response.status_code == 200
    assert response.json()["access"]


async def test_simplejwt_alias_with_curl_style_body(client, user):
    response = await client.post(
        "/api/token/",
        content=f"username={user.username}&password={PASSWORD.replace(' ', '+')}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
    pair = response.json()
    refreshed = await client.post("/api/token/refresh/", data={"refresh": pair["refresh"]})
    assert refreshed.status_code == 200
    verified = await client.post("/api/token/verify/", data={"token": refreshed.json()["access"]})
    assert verified.status_code == 200 and verified.json() == {}
    out = await client.post("/api/token/blacklist/", data={"refresh": refreshed.json()["refresh"]})
    assert out.status_code == 200 and out.json() == {}  # as simplejwt's blacklist answers
    again = await client.post("/api/token/verify/", data={"token": refreshed.json()["access"]})
    assert again.status_code == 401


async def test_wrong_password_is_401_without_tokens(client, user):
    response = await client.post(
        "/api/auth/login", json={"username": user.username, "password": "wrong"}
    )
    assert response.status_code == 401
    assert response.json() == {
        "detail": "No active account found with the given credentials",
        "code": "no_active_account",
    }
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "invalid_token" not in response.headers["WWW-Authenticate"]


async def test_unknown_user_is_401(client):
    response = await client.post("/api/auth/login", json={"username": "nobody-x", "password": "x"})
    assert response.status_code == 401
    assert response.json()["code"] == "no_active_account"


async def test_inactive_user_is_401(client, make_user):
    user = await make_user(is_active=False)
    response = await client.post(
        "/api/auth/login", json={"username": user.username, "password": PASSWORD}
    )
    assert response.status_code == 401
    assert response.json()["code"] == "no_active_account"


@pytest.mark.parametrize(
    "body",
    [
        {"username": "alice"},
        {"password": "x"},
        {},
        {"username": 5, "password": "x"},
        {"username": "a", "password": None},
        {"username": "", "password": "x"},
        {"username": "a\x00b", "password": "x"},
        {"username": "a" * 151, "password": "x"},
    ],
    ids=["no-password", "no-username", "empty", "int-username", "null-password",
         "empty-username", "nul-byte", "too-long"],
)  # fmt: skip
async def test_invalid_fields_are_422(client, body):
    response = await client.post("/api/auth/login", json=body)
    assert response.status_code == 422
    data = response.json()
    assert data["code"] == "invalid" and isinstance(data["detail"], str)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"", "application/json"),
        (b"username=a&password=b", "text/plain"),
        (b"<xml/>", "application/xml"),
        (b"[" * 5000 + b"]" * 5000, "application/json"),
        (b'"just a string"', "application/json"),
        (b"username=a&password=b", "application/x-www-form-urlencoded; charset=latin-1"),
        (b"&".join(b"k%d=v" % i for i in range(1500)), "application/x-www-form-urlencoded"),
        (b"garbage", "multipart/form-data"),
    ],
    ids=[
        "malformed-json",
        "json-array",
        "bad-utf8",
        "empty-json",
        "text-plain",
        "xml",
        "deeply-nested",
        "json-string",
        "latin1-form",
        "too-many-fields",
        "no-boundary",
    ],
)
async def test_malformed_bodies_are_400(client, content, content_type):
    response = await client.post(
        "/api/auth/login", content=content, headers={"Content-Type": content_type}
    )
    unsupported = content_type in {"text/plain", "application/xml"}  # API.md: 415
    assert response.status_code == (415 if unsupported else 400)
    assert response.json()["code"] in {"parse_error", "unsupported_media_type"}


async def test_body_over_16k_is_413(client, user):
    big = {"username": user.username, "password": "x" * (17 * 1024)}
    response = await client.post("/api/auth/login", json=big)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


async def test_chunked_body_over_16k_is_413(client):
    async def chunks():
        for _ in range(20):
            yield b"x" * 1024

    response = await client.post(
        "/api/auth/login", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413


async def test_get_on_login_is_405_json(client):
    response = await client.get("/api/auth/login")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


async def test_unknown_path_is_404_json(client):
    response = await client.get("/nowhere")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "code": "not_found"}


async def test_me_needs_bearer(client, user):
    pair = await login(client, user)
    ok = await client.get("/api/auth/me", headers=bearer(pair["access"]))
    assert ok.status_code == 200
    assert ok.json()["id"] == user.pk and ok.json()["username"] == user.username
    missing = await client.get("/api/auth/me")
    assert missing.status_code == 401
    assert missing.json()["code"] == "not_authenticated"
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="api"'

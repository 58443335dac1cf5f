"""Answers that teach: a mistake gets a JSON error that says what to send instead."""

from __future__ import annotations

import json

import pytest

from tests.conftest import PASSWORD, login

BODY_PATHS = [
    "/api/auth/login",
    "/api/auth/refresh",
    "/api/auth/logout",
    "/api/auth/verify",
    "/api/token/",
    "/api/token/refresh/",
    "/api/token/verify/",
    "/api/token/blacklist/",
]
FORM = "application/x-www-form-urlencoded"


def _teaches(response, status: int, code: str, *words: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    for word in words:
        assert word in body["detail"], body
    return str(body["detail"])


# --- the body's Content-Type --------------------------------------------------------------------


@pytest.mark.parametrize("path", BODY_PATHS)
async def test_json_sent_as_a_form_names_the_content_type_to_send(client, path):
    # curl -d '{"username": ...}' sends application/x-www-form-urlencoded
    content = json.dumps({"username": "alice", "password": "x", "refresh": "x", "token": "x"})
    response = await client.post(path, content=content, headers={"Content-Type": FORM})
    _teaches(response, 415, "unsupported_media_type", "Content-Type: application/json")


async def test_json_sent_as_a_form_with_a_charset_is_caught_too(client):
    response = await client.post(
        "/api/auth/login",
        content=b'  {"username": "alice", "password": "x"}',
        headers={"Content-Type": f"{FORM}; charset=utf-8"},
    )
    _teaches(response, 415, "unsupported_media_type", "application/json")


async def test_a_form_whose_value_starts_with_a_brace_is_still_a_form(client, user):
    # only a whole JSON object is taken for JSON: a real form is never refused
    response = await client.post(
        "/api/auth/login",
        content=f"username={user.username}&password={PASSWORD}".encode(),
        headers={"Content-Type": FORM},
    )
    assert response.status_code == 200, response.text
    odd = await client.post(
        "/api/auth/login", content=b"{a=1&username=x&password=y", headers={"Content-Type": FORM}
    )
    assert odd.status_code == 401, odd.text


async def test_a_form_sent_as_json_names_the_form_content_type(client):
    response = await client.post(
        "/api/auth/login",
        content=b"username=alice&password=x",
        headers={"Content-Type": "application/json"},
    )
    _teaches(response, 400, "parse_error", FORM)


@pytest.mark.parametrize("path", BODY_PATHS)
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "application/octet-stream", "image/png"]
)
async def test_an_unsupported_content_type_is_415_everywhere(client, path, content_type):
    response = await client.post(path, content=b"x=1", headers={"Content-Type": content_type})
    _teaches(response, 415, "unsupported_media_type", "application/json", FORM)
    assert "WWW-Authenticate" not in response.headers


async def test_a_body_without_content_type_that_is_not_json_is_415(client):
    response = await client.post("/api/auth/verify", content=b"token=abc")
    # httpx sends no Content-Type for raw bytes
    _teaches(response, 415, "unsupported_media_type")


# --- the Authorization scheme ---------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["JWT", "Token", "jwt", "Basic"])
@pytest.mark.parametrize("path", ["/api/auth/me", "/api/auth/sessions", "/demo/async"])
async def test_a_token_under_another_scheme_is_told_bearer(client, user, scheme, path):
    access = (await login(client, user))["access"]
    response = await client.get(path, headers={"Authorization": f"{scheme} {access}"})
    detail = _teaches(response, 401, "not_authenticated", "Authorization: Bearer <token>")
    assert scheme.lower() in detail.lower()
    assert access not in response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_token_with_no_scheme_is_told_bearer_and_not_echoed(client, user):
    access = (await login(client, user))["access"]
    response = await client.post("/api/auth/logout-all", headers={"Authorization": access})
    _teaches(response, 401, "not_authenticated", "Bearer")
    assert access[:20] not in response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_no_header_at_all_keeps_the_plain_answer(client):
    response = await client.get("/api/auth/me")
    _teaches(response, 401, "not_authenticated", "credentials were not provided")


async def test_metrics_token_under_another_scheme_is_told_bearer(client, authapi_settings):
    with authapi_settings(METRICS_TOKEN="m" * 32):
        response = await client.get("/metrics", headers={"Authorization": "Token " + "m" * 32})
    _teaches(response, 401, "not_authenticated", "Bearer")


# --- the trailing slash ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/auth/login/"),
        ("post", "/api/auth/refresh/"),
        ("post", "/api/auth/logout-all/"),
        ("get", "/api/auth/me/"),
        ("delete", "/api/auth/sessions/abcdefghijklmnopqrstuv/"),
    ],
)
async def test_a_trailing_slash_is_a_404_naming_the_path_without_it(client, method, path):
    response = await client.request(method, path, json={"username": "a", "password": "b"})
    _teaches(response, 404, "not_found", f"Did you mean {path.rstrip('/')} (no trailing slash)?")

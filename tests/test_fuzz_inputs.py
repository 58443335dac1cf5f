"""Hand-picked odd client inputs: every answer must be a JSON 4xx with "detail" and "code"
(or a success), never a 5xx, a non-JSON body, or a bad token let through.

The first tests below failed when they were written (each docstring says what came back
then); they pass now.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from project.asgi import application
from tests.conftest import PASSWORD, bearer, login

FORM = "application/x-www-form-urlencoded"
BODY_PATHS = (
    "/api/auth/login",
    "/api/auth/refresh",
    "/api/auth/logout",
    "/api/auth/verify",
    "/api/token/",
    "/api/token/refresh/",
    "/api/token/verify/",
    "/api/token/blacklist/",
)


def assert_json_error(response: httpx.Response, *statuses: int) -> dict:
    """A 4xx (one of ``statuses`` when given) whose JSON body has "detail" and "code"."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    if statuses:
        assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert response.headers.get("content-type", "").startswith("application/json"), (
        response.headers.get("content-type"),
        response.text[:300],
    )
    body = response.json()
    assert isinstance(body, dict) and {"detail", "code"} <= body.keys(), body
    return body


async def asgi_call(
    method: str, path: str, *, query: bytes = b"", headers: tuple[tuple[bytes, bytes], ...] = ()
) -> tuple[int, dict[bytes, bytes], bytes]:
    """Call the ASGI app with a hand-built scope: bytes no HTTP client would send."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": query, "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    messages = [{"type": "http.request", "body": b"", "more_body": False}]
    status, response_headers, body = 0, {}, b""

    async def receive() -> Any:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # never: the app must not read past the body
        return {}

    async def send(message: Any) -> None:
        nonlocal status, response_headers, body
        if message["type"] == "http.response.start":
            status, response_headers = message["status"], dict(message["headers"])
        elif message["type"] == "http.response.body":
            body += message.get("body", b"")

    await asyncio.wait_for(application(scope, receive, send), 5)
    return status, response_headers, body


def _multipart(fields: dict[str, str], boundary: str = "fuzzb") -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    return ("".join(parts) + f"--{boundary}--\r\n").encode()


# --- failing today ----------------------------------------------------------------------


@pytest.mark.parametrize("charset", ["rot13", "base64", "undefined", "idna"])
@pytest.mark.parametrize("path", ["/api/auth/login", "/api/auth/refresh", "/api/token/verify/"])
async def test_multipart_with_a_non_text_charset_is_a_400(client, user, path, charset):
    """500 today: Django decodes field names with the charset parameter of the
    Content-Type; 'rot13' is a codec but not a text encoding (LookupError), 'undefined'
    and 'idna' raise UnicodeError, and schemas._decode catches neither."""
    body = _multipart({"username": user.username, "password": "x", "refresh": "x", "token": "x"})
    response = await client.post(
        path,
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary=fuzzb; charset={charset}"},
    )
    assert_json_error(response, 400)


async def test_non_utf8_query_string_answers_json(client):
    """Empty text/html 400 today: Django's ASGIHandler cannot decode the query string
    and answers HttpResponseBadRequest before any middleware runs. (uvicorn itself refuses
    such a request line with a text/plain 400; other ASGI servers pass the bytes on.)"""
    for method, path in (("GET", "/health"), ("POST", "/api/auth/login"), ("GET", "/api/docs")):
        status, headers, body = await asgi_call(method, path, query=b"a=\xff")
        assert 400 <= status < 500, (path, status)
        assert headers.get(b"content-type", b"").startswith(b"application/json"), (path, headers)
        assert {"detail", "code"} <= json.loads(body).keys(), (path, body)


async def test_padded_signature_is_not_accepted(client, user):
    """Accepted today (200/200/200): PyJWT strips '=' padding from the signature segment,
    so ``<token>=`` is a second spelling of a valid token. RFC 7515 compact JWS has no
    padding; the service should refuse the non-canonical form. (Revocation keys on jti,
    so this is malleability, not a revocation bypass.)"""
    pair = await login(client, user)
    me = await client.get("/api/auth/me", headers=bearer(pair["access"] + "="))
    assert_json_error(me, 401)
    verify = await client.post("/api/auth/verify", json={"token": pair["refresh"] + "="})
    assert_json_error(verify, 401)
    refresh = await client.post("/api/auth/refresh", json={"refresh": pair["refresh"] + "="})
    assert_json_error(refresh, 401)


@pytest.mark.parametrize("authorization", [None, "Basic Zm9vOmJhcg==", "Token abc"])
async def test_api_without_our_handlers_names_a_code_for_missing_credentials(client, authorization):
    """{"detail": "Unauthorized"} without "code" today: tests/urls.py's ``bare`` API (a
    user's NinjaAPI that never called install_error_handlers) relies on the middleware,
    which leaves any JSON response alone, so Ninja's own 401 body goes out as is."""
    headers = {"Authorization": authorization} if authorization else {}
    response = await client.get("/bare/async", headers=headers)
    body = assert_json_error(response, 401)
    assert body["code"] == "not_authenticated"


# --- passing probes worth keeping -------------------------------------------------------


@pytest.mark.parametrize("body", [b'"str"', b"1", b"true", b"null", b"[]", b"1e999999"])
@pytest.mark.parametrize("path", BODY_PATHS)
async def test_json_body_that_is_not_an_object(client, path, body):
    response = await client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert assert_json_error(response, 400)["code"] == "parse_error"


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 5000,
        b'{"a":' * 2500 + b"1" + b"}" * 2500,
        b'{"username": ' + b"9" * 5000 + b', "password": "x"}',
        b'{"username": "a", "password": "x"}\x00',
    ],
    ids=["deep-array", "deep-object", "huge-int", "trailing-nul"],
)
async def test_malformed_json_is_a_400(client, body):
    response = await client.post(
        "/api/auth/login", content=body, headers={"Content-Type": "APPLICATION/JSON; charset=x"}
    )
    assert assert_json_error(response, 400)["code"] == "parse_error"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/auth/login", {"username": "\ud800", "password": "x"}),
        ("/api/auth/login", {"username": "a\x00", "password": "x"}),
        ("/api/auth/login", {"username": {"$gt": ""}, "password": "x"}),
        ("/api/auth/refresh", {"refresh": "\ud800"}),
        ("/api/auth/verify", {"token": "a" * 9000}),
        ("/api/auth/verify", {"token": 1e308}),
        ("/api/auth/login", b'{"username": "\xed\xa0\x80", "password": "x"}'),
    ],
)
async def test_invalid_field_values_are_a_422(client, path, body):
    # ensure_ascii: the lone surrogate goes as \ud800; raw bytes ED A0 80 as well
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await client.post(
        path, content=content, headers={"Content-Type": "application/json"}
    )
    assert assert_json_error(response, 422)["code"] == "invalid"


async def test_duplicate_keys_and_charsets(client, user):
    """Last JSON key wins; a form's last value wins; a form charset other than UTF-8 is 400."""
    dup = f'{{"username": "nobody", "username": "{user.username}", "password": "{PASSWORD}"}}'
    response = await client.post(
        "/api/auth/login", content=dup, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    form = f"username=nobody&username={user.username}&password={PASSWORD}"
    response = await client.post("/api/auth/login", content=form, headers={"Content-Type": FORM})
    assert response.status_code == 200, response.text
    for charset in ("rot13", "latin-1", "utf-16"):
        response = await client.post(
            "/api/auth/login", content=form, headers={"Content-Type": f"{FORM}; charset={charset}"}
        )
        assert_json_error(response, 400)


async def test_chunked_body_over_16_kib_is_a_413(client):
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"username": "'
        yield b"a" * 20000
        yield b'", "password": "x"}'

    response = await client.post(
        "/api/auth/login", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert assert_json_error(response, 413)["code"] == "payload_too_large"


@pytest.mark.parametrize(
    "value",
    [b"Bearer \xff\xfe", b"Bearer \x80" * 50, b"Bearer " + b"a" * 9000, b"Bearer", b"\xff"],
    ids=["latin1", "many-high-bytes", "9k", "empty-token", "garbage-scheme"],
)
async def test_odd_authorization_header_is_a_401(client, value):
    for method, path in (("GET", "/api/auth/me"), ("POST", "/api/auth/logout-all")):
        response = await client.request(method, path, headers={"Authorization": value})
        assert_json_error(response, 401)


async def test_every_path_and_method_answers_json(client, user):
    paths = [
        *BODY_PATHS, "/api/auth/logout-all", "/api/auth/me", "/api/auth/sessions",
        "/api/auth/sessions/abc", "/.well-known/jwks.json", "/health", "/api/docs",
        "/api/openapi.json", "/api/auth/me/", "/api/token", "/health/", "/api/auth//me",
    ]  # fmt: skip
    access = (await login(client, user))["access"]
    for path in paths:
        for method in ("HEAD", "OPTIONS", "PATCH", "PUT", "TRACE", "FOO"):
            response = await client.request(method, path, headers=bearer(access))
            assert response.status_code < 500, (method, path, response.status_code)
            if response.status_code >= 400 and method != "HEAD":
                assert_json_error(response)


@pytest.mark.parametrize(
    "sid", ["%2e%2e", "a%2Fb", "%00" * 16, "%EF%BF%BD" * 16, "A" * 16 + "%0A", "%41" * 16]
)
async def test_odd_session_ids_are_a_404(client, user, sid):
    access = (await login(client, user))["access"]
    response = await client.delete(f"/api/auth/sessions/{sid}", headers=bearer(access))
    assert_json_error(response, 404)


async def test_forwarded_for_garbage_and_huge_user_agent(client, user):
    headers = {
        "X-Forwarded-For": "garbage, ::::, [::1, 999.1.1.1, " + "1.2.3.4," * 700,
        "User-Agent": "U" * 9_000,
    }
    pair = await login(client, user, headers=headers)
    sessions = await client.get("/api/auth/sessions", headers=bearer(pair["access"]))
    assert sessions.status_code == 200
    mine = [s for s in sessions.json() if s["current"]]
    assert mine and mine[0]["user_agent"] == "U" * 256 and mine[0]["ip"] == "127.0.0.1"


async def test_headers_over_the_limit_are_a_431_not_a_crash(client, user):
    huge = {"User-Agent": "U" * 100_000}
    response = await client.post(
        "/api/auth/login", json={"username": user.username, "password": PASSWORD}, headers=huge
    )
    assert assert_json_error(response, 431)["code"] == "request_header_fields_too_large"

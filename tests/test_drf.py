"""authapi.drf on real DRF views: in-process over ASGI, over a sync (WSGI) test client, and
on a live uvicorn. Tokens pass, revoked ones are refused at once with simplejwt's body,
Redis down is a 503, and each authentication costs one Redis command."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import httpx
import jwt
import pytest
import redis as syncredis
import redis.asyncio as aioredis

pytest.importorskip("rest_framework", reason="authapi[drf] is not installed")

from authapi import keys, sessions, store  # noqa: E402
from tests import drf_settings  # noqa: E402
from tests.conftest import PASSWORD, ROOT, LiveServer, bearer, login  # noqa: E402
from tests.test_auth import count_queries  # noqa: E402

NOT_PROVIDED = "Authentication credentials were not provided."
PATHS = ["/drf/me", "/drf/user", "/drf/stateless"]


@pytest.fixture(scope="module", autouse=True)
def drf():
    with drf_settings.installed():
        yield


def _assert_token_not_valid(response, message: str | None = None) -> None:
    """simplejwt's JWTAuthentication body and challenge for a refused token."""
    assert response.status_code == 401, response.text
    body = response.json()
    assert set(body) == {"detail", "code", "messages"}, body
    assert body["detail"] == "Given token not valid for any token type"
    assert body["code"] == "token_not_valid"
    [entry] = body["messages"]
    assert entry["token_class"] == "AccessToken" and entry["token_type"] == "access"
    if message is not None:
        assert entry["message"] == message
    challenge = response.headers["WWW-Authenticate"]
    assert challenge == 'Bearer realm="api", error="invalid_token"'


def _not_provided(response) -> bool:
    """DRF's answer without credentials (our json_errors middleware adds its code)."""
    body = response.json()
    return body["detail"] == NOT_PROVIDED and body.get("code", "not_authenticated") == (
        "not_authenticated"
    )


def _assert_unavailable(response) -> None:
    assert response.status_code == 503, response.text
    assert response.json() == {
        "detail": "The token store is unavailable. Try again shortly.",
        "code": "service_unavailable",
    }
    assert int(response.headers["Retry-After"]) > 0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


async def _commands_served(redis_client) -> int:
    stats = await redis_client.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")


# --- in-process, over ASGI ------------------------------------------------------------


async def test_a_good_token_passes_and_names_the_user(client, user):
    pair = await login(client, user)
    for path, user_class in [("/drf/me", "User"), ("/drf/user", "User"),
                             ("/drf/stateless", "TokenUser")]:  # fmt: skip
        response = await client.get(path, headers=bearer(pair["access"]))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["user_id"] == user.pk and body["pk"] == user.pk
        assert body["user_class"] == user_class and body["sid"]
        if "username" in body:
            assert body["username"] == user.username


async def test_the_stateless_user_loads_the_database_user_on_demand(client, user):
    pair = await login(client, user)
    headers = bearer(pair["access"])
    assert (await client.get("/drf/stateless", headers=headers)).status_code == 200
    with count_queries() as queries:
        assert (await client.get("/drf/stateless", headers=headers)).status_code == 200
    assert queries == []
    with count_queries() as queries:
        response = await client.get("/drf/stateless/username", headers=headers)
    assert response.status_code == 200 and response.json()["username"] == user.username
    assert len(queries) == 1


@pytest.mark.parametrize("path", PATHS)
async def test_logout_refuses_the_access_token_at_once(client, user, path):
    pair = await login(client, user)
    assert (await client.get(path, headers=bearer(pair["access"]))).status_code == 200
    out = await client.post("/api/auth/logout", json={"refresh": pair["refresh"]})
    assert out.status_code == 204
    _assert_token_not_valid(
        await client.get(path, headers=bearer(pair["access"])), "Token has been revoked"
    )


@pytest.mark.parametrize("path", PATHS)
async def test_logout_all_refuses_every_access_token(client, user, path):
    first, second = await login(client, user), await login(client, user)
    everywhere = await client.post("/api/auth/logout-all", headers=bearer(first["access"]))
    assert everywhere.status_code == 204
    for pair in (first, second):
        _assert_token_not_valid(
            await client.get(path, headers=bearer(pair["access"])), "Token has been revoked"
        )


def _alg_none(access: str) -> str:
    header = {"alg": "none", "typ": "JWT", "kid": keys.get().current.kid}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims(access)).encode())}."


def _tampered(access: str) -> str:
    head, _, sig = access.split(".")
    claims = _claims(access) | {"user_id": 999999}
    return f"{head}.{_b64(json.dumps(claims).encode())}.{sig}"


@pytest.mark.parametrize(
    ("forge", "message"),
    [
        (lambda pair: "not-a-token", "Token is malformed"),
        (lambda pair: pair["refresh"], "Token has wrong type"),
        (lambda pair: _alg_none(pair["access"]), None),
        (lambda pair: _tampered(pair["access"]), None),
        (lambda pair: pair["access"][:-3] + "AAA", None),
    ],
    ids=["garbage", "refresh-as-access", "alg-none", "tampered", "bad-signature"],
)
@pytest.mark.parametrize("path", PATHS)
async def test_bad_tokens_get_simplejwts_401(client, user, path, forge, message):
    pair = await login(client, user)
    _assert_token_not_valid(await client.get(path, headers=bearer(forge(pair))), message)


@pytest.mark.parametrize("path", PATHS)
async def test_an_expired_token_gets_simplejwts_401(client, user, clock, path):
    pair = await login(client, user)
    clock.shift(901)
    _assert_token_not_valid(
        await client.get(path, headers=bearer(pair["access"])), "Token is expired"
    )


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("header", [None, "", "Token abc", "Basic dXNlcjpwYXNz"])
async def test_no_bearer_header_is_drfs_401_with_a_challenge(client, path, header):
    headers = {} if header is None else {"Authorization": header}
    response = await client.get(path, headers=headers)
    assert response.status_code == 401
    assert _not_provided(response)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize("header", ["Bearer", "Bearer {} {}"], ids=["scheme-only", "two-values"])
async def test_a_malformed_header_is_simplejwts_bad_authorization_header(client, user, header):
    pair = await login(client, user)
    value = header.format(pair["access"], pair["access"])
    response = await client.get("/drf/me", headers={"Authorization": value})
    assert response.status_code == 401
    assert response.json() == {
        "detail": "Authorization header must contain two space-delimited values",
        "code": "bad_authorization_header",
    }


@pytest.mark.parametrize("header", ["bearer {}", "BEARER  {} "], ids=["lower", "upper-spaced"])
async def test_the_scheme_is_case_insensitive(client, user, header):
    pair = await login(client, user)
    headers = {"Authorization": header.format(pair["access"])}
    assert (await client.get("/drf/me", headers=headers)).status_code == 200


async def test_an_inactive_user_is_refused_when_the_user_is_loaded(client, user):
    """``QuerySet.update()`` sends no signal: the session lives, the user load refuses."""
    from asgiref.sync import sync_to_async
    from django.contrib.auth import get_user_model

    pair = await login(client, user)
    model = get_user_model()
    await sync_to_async(model.objects.filter(pk=user.pk).update)(is_active=False)
    response = await client.get("/drf/user", headers=bearer(pair["access"]))
    assert response.status_code == 401
    assert response.json() == {"detail": "User is inactive", "code": "user_inactive"}
    stateless = await client.get("/drf/stateless", headers=bearer(pair["access"]))
    assert stateless.status_code == 200  # no query, as simplejwt's stateless class


@pytest.mark.parametrize("path", PATHS)
async def test_redis_down_is_a_503_and_recovers(client, redis, user, path):
    pair = await login(client, user)
    redis.stop()
    try:
        _assert_unavailable(await client.get(path, headers=bearer(pair["access"])))
        # what the signature alone refuses is still a 401
        _assert_token_not_valid(await client.get(path, headers=bearer("not-a-token")))
    finally:
        redis.start()
    assert (await client.get(path, headers=bearer(pair["access"]))).status_code == 200


@pytest.mark.parametrize(("path", "queries_each"), [("/drf/me", 1), ("/drf/stateless", 0)])
async def test_one_redis_command_per_authentication(client, user, path, queries_each):
    pair = await login(client, user)
    headers = bearer(pair["access"])
    assert (await client.get(path, headers=headers)).status_code == 200  # warm connections
    observer = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        before = await _commands_served(observer)
        with count_queries() as queries:
            for _ in range(10):
                assert (await client.get(path, headers=headers)).status_code == 200
        after = await _commands_served(observer)
    finally:
        await observer.aclose()
    assert after - before == 10
    assert len(queries) == 10 * queries_each


# --- a sync (WSGI) test client ----------------------------------------------------------


@pytest.fixture
def wsgi_client():
    """Django's test Client, leaving the request signals as it found them.

    The Client reconnects ``close_old_connections`` to request_started/finished after each
    request; the served app disconnects it (authapi.serving), and must stay so.
    """
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections
    from django.test import Client

    signals = (request_started, request_finished)
    connected = [signal.disconnect(close_old_connections) for signal in signals]
    for signal, was in zip(signals, connected, strict=True):
        if was:
            signal.connect(close_old_connections)
    try:
        yield Client()
    finally:
        for signal, was in zip(signals, connected, strict=True):
            signal.disconnect(close_old_connections)
            if was:
                signal.connect(close_old_connections)


def _sync_commands(observer) -> int:
    stats = observer.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")


def _session(name: str):
    """A user and a session opened directly: the authapi endpoints are ASGI-only, so a
    WSGI client only ever calls the DRF views here."""
    from django.contrib.auth import get_user_model
    from django.test import RequestFactory

    user = get_user_model().objects.create_user(f"{name}-{os.getpid()}", password=PASSWORD)
    request = RequestFactory().post("/api/auth/login")
    _, pair = store.run_sync(lambda: sessions.start(user, request))
    return user, {"Authorization": f"Bearer {pair['access']}"}


def test_under_wsgi_too_one_pooled_redis_command_each(wsgi_client):
    """No event loop to reach: the check runs on the module's own loop, one pool for all."""
    user, headers = _session("wsgi")
    http = wsgi_client
    assert http.get("/drf/me", headers=headers).status_code == 200
    observer = syncredis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        loops = len(store._stores)
        before = _sync_commands(observer)
        for path in ["/drf/me", "/drf/stateless"] * 5:
            response = http.get(path, headers=headers)
            assert response.status_code == 200, response.content
            assert response.json()["user_id"] == user.pk
        assert _sync_commands(observer) - before == 10
        assert len(store._stores) == loops  # no client (and connection) per request
    finally:
        observer.close()
    store.run_sync(lambda: sessions.revoke_all(None, user.pk, reason="test"))
    _assert_token_not_valid(http.get("/drf/me", headers=headers), "Token has been revoked")
    _assert_token_not_valid(http.get("/drf/stateless", headers=headers))
    missing = http.get("/drf/me")
    assert missing.status_code == 401 and _not_provided(missing)
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="api"'


def test_under_wsgi_redis_down_is_a_503(redis, wsgi_client):
    _, headers = _session("wsgi-down")
    redis.stop()
    try:
        _assert_unavailable(wsgi_client.get("/drf/stateless", headers=headers))
    finally:
        redis.start()
    assert wsgi_client.get("/drf/stateless", headers=headers).status_code == 200


# --- tokens_for_user: simplejwt's RefreshToken.for_user ---------------------------------


async def _usable(client, pair: dict) -> None:
    """The pair is a session's: the access token passes, the refresh token rotates."""
    assert (await client.get("/drf/me", headers=bearer(pair["access"]))).status_code == 200
    rotated = await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
    assert rotated.status_code == 200, rotated.text


async def test_tokens_for_user_in_a_view_opens_a_session(client, user):
    headers = {"User-Agent": "signup-view/1"}
    response = await client.post("/drf/issue", json={"username": user.username}, headers=headers)
    assert response.status_code == 200, response.text
    pair = response.json()
    assert set(pair) == {"access", "refresh", "token_type", "expires_in", "refresh_expires_in"}
    assert _claims(pair["access"])["user_id"] == user.pk
    listed = await client.get("/api/auth/sessions", headers=bearer(pair["access"]))
    [session] = listed.json()
    assert session["id"] == _claims(pair["access"])["sid"]
    assert (session["user_agent"], session["ip"]) == ("signup-view/1", "127.0.0.1")
    await _usable(client, pair)


def test_tokens_for_user_under_wsgi_and_without_a_request(wsgi_client, redis):
    """A WSGI view, and plain sync code (a test's setUp, a shell): no event loop there."""
    from django.contrib.auth import get_user_model

    from authapi.drf import tokens_for_user
    from authapi.errors import StoreUnavailable

    model = get_user_model()
    user = model.objects.create_user(f"issue-{os.getpid()}", password=PASSWORD)
    answer = wsgi_client.post("/drf/issue", {"username": user.username})
    assert answer.status_code == 200, answer.content
    pairs = [answer.json(), tokens_for_user(user)]
    assert len({_claims(pair["access"])["sid"] for pair in pairs}) == 2
    for pair in pairs:
        headers = {"Authorization": f"Bearer {pair['access']}"}
        assert wsgi_client.get("/drf/me", headers=headers).json()["user_id"] == user.pk
    rotated = wsgi_client.post(
        "/api/auth/refresh", {"refresh": pairs[1]["refresh"]}, content_type="application/json"
    )
    assert rotated.status_code == 200, rotated.content
    redis.stop()
    try:
        with pytest.raises(StoreUnavailable):
            tokens_for_user(user)
    finally:
        redis.start()
    user.is_active = False
    user.save()
    with pytest.raises(ValueError, match="inactive"):
        tokens_for_user(user)


async def test_logout_and_logout_all_in_views(client, make_user):
    """simplejwt's ``RefreshToken(refresh).blacklist()`` and a loop over the user's
    ``OutstandingToken``, as DRF views under ASGI: the access tokens die with them."""
    user, other = await make_user(), await make_user()
    first, second, third = [await login(client, user) for _ in range(3)]
    theirs = await login(client, other)
    out = await client.post(
        "/drf/logout", json={"refresh": first["refresh"]}, headers=bearer(second["access"])
    )
    assert out.status_code == 204, out.text
    _assert_token_not_valid(
        await client.get("/drf/me", headers=bearer(first["access"])), "Token has been revoked"
    )
    everywhere = await client.post("/drf/logout-all", headers=bearer(second["access"]))
    assert everywhere.json() == {"ended": 2}
    for pair in (second, third):
        _assert_token_not_valid(await client.get("/drf/me", headers=bearer(pair["access"])))
    assert (await client.get("/drf/me", headers=bearer(theirs["access"]))).status_code == 200


def test_logout_and_logout_all_from_sync_code(wsgi_client):
    from authapi.drf import logout, logout_all, tokens_for_user
    from authapi.errors import TokenInvalid

    user, headers = _session("logout-sync")
    pair = tokens_for_user(user)
    with pytest.raises(TokenInvalid, match="wrong type"):
        logout(pair["access"])
    logout(pair["refresh"])
    with pytest.raises(TokenInvalid, match="revoked"):
        logout(pair["refresh"])
    refused = wsgi_client.get("/drf/me", headers={"Authorization": f"Bearer {pair['access']}"})
    _assert_token_not_valid(refused, "Token has been revoked")
    assert wsgi_client.get("/drf/me", headers=headers).status_code == 200
    assert logout_all(user) == 1
    _assert_token_not_valid(wsgi_client.get("/drf/me", headers=headers))
    assert logout_all(user) == 0


# --- a live uvicorn -------------------------------------------------------------------


@pytest.fixture(scope="module")
def drf_server():
    with LiveServer(env={"DJANGO_SETTINGS_MODULE": "tests.drf_settings"}) as server:
        yield server


async def test_live_server(drf_server, redis, user):
    async with httpx.AsyncClient(base_url=drf_server.url) as http:
        pair = await login(http, user)
        headers = bearer(pair["access"])
        for path in PATHS:
            response = await http.get(path, headers=headers)
            assert response.status_code == 200, response.text
            assert response.json()["user_id"] == user.pk

        observer = aioredis.Redis.from_url(os.environ["REDIS_URL"])
        try:
            before = await _commands_served(observer)
            for _ in range(10):
                assert (await http.get("/drf/stateless", headers=headers)).status_code == 200
            assert await _commands_served(observer) - before == 10
        finally:
            await observer.aclose()

        missing = await http.get("/drf/me")
        assert missing.status_code == 401 and _not_provided(missing)
        assert missing.headers["WWW-Authenticate"] == 'Bearer realm="api"'
        _assert_token_not_valid(await http.get("/drf/me", headers=bearer(pair["refresh"])))

        redis.stop()
        try:
            _assert_unavailable(await http.get("/drf/me", headers=headers))
        finally:
            redis.start()
        assert (await http.get("/drf/me", headers=headers)).status_code == 200

        out = await http.post("/api/token/blacklist/", json={"refresh": pair["refresh"]})
        assert out.status_code == 200 and out.json() == {}
        for path in PATHS:
            _assert_token_not_valid(await http.get(path, headers=headers), "Token has been revoked")

        other = await login(http, user)
        await http.post("/api/auth/logout-all", headers=bearer(other["access"]))
        _assert_token_not_valid(await http.get("/drf/me", headers=bearer(other["access"])))


def test_authapi_never_imports_drf():
    """Only authapi.drf imports rest_framework: a project without DRF runs as before."""
    code = (
        "import sys, django; django.setup()\n"
        "import authapi, authapi.api, authapi.auth, authapi.urls, project.asgi\n"
        "assert not [m for m in sys.modules if m.startswith('rest_framework')], 'imported'\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env, timeout=60)


@pytest.mark.parametrize("path", PATHS)
async def test_a_dpop_bound_token_needs_its_proof_on_drf_views(client, user, path):
    from tests.dpop_client import Key

    key, thief = Key(), Key()
    login_url = "http://127.0.0.1/api/auth/login"
    pair = (
        await client.post(
            "/api/auth/login",
            json={"username": user.username, "password": PASSWORD},
            headers={"DPoP": key.proof("POST", login_url)},
        )
    ).json()
    access, url = pair["access"], f"http://127.0.0.1{path}"

    def dpop(k):
        return {"Authorization": f"DPoP {access}", "DPoP": k.proof("GET", url, token=access)}

    ok = await client.get(path, headers=dpop(key))
    assert ok.status_code == 200, ok.text
    for headers in (bearer(access), dpop(thief), {"Authorization": f"DPoP {access}"}):
        refused = await client.get(path, headers=headers)
        assert refused.status_code == 401, refused.text
        assert refused.json()["code"] == "token_not_valid"
    assert refused.headers["WWW-Authenticate"].startswith('DPoP realm="api"')

"""RFC 8414 metadata, RFC 7662 introspection and RFC 7009 revocation, over real HTTP.

A uvicorn of the project (its own process, the suite's database and store) with two
resource clients configured; a second one whose store is a closed port (fail closed).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import time
from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote_plus

import httpx
import jwt
import pytest
import redis as redis_sync

from authapi import keys, oauth
from tests.conftest import PASSWORD, LiveServer, bearer
from tests.redis_server import free_port

SECRET = "s3cret+with:colon and space"
CLIENTS = f"reporting:{SECRET},billing:other-secret-value"


def basic(client_id: str, secret: str, *, encode: bool = True) -> dict[str, str]:
    if encode:  # RFC 6749 2.3.1: each form-urlencoded, then joined and base64'd
        client_id, secret = quote_plus(client_id), quote_plus(secret)
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


GOOD = basic("reporting", SECRET)


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    env = {"AUTHAPI_RESOURCE_CLIENTS": CLIENTS, "AUTHAPI_LOGIN_RATE": "0"}
    with LiveServer(env=env) as live:
        yield live


@pytest.fixture
async def http(server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
        yield c


async def login_at(http: httpx.AsyncClient, user) -> dict:
    answer = await http.post(
        "/api/auth/login", json={"username": user.username, "password": PASSWORD}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


async def introspect(http: httpx.AsyncClient, token, headers=GOOD, **kw) -> httpx.Response:
    return await http.post("/api/auth/introspect", data={"token": token}, headers=headers, **kw)


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


# --- metadata -----------------------------------------------------------------------------


async def test_metadata_names_absolute_endpoints_that_work(http, server, user):
    answer = await http.get("/.well-known/oauth-authorization-server")
    assert answer.status_code == 200
    meta = answer.json()
    assert meta["issuer"] == server.url
    assert meta["jwks_uri"] == f"{server.url}/.well-known/jwks.json"
    assert meta["introspection_endpoint"] == f"{server.url}/api/auth/introspect"
    assert meta["revocation_endpoint"] == f"{server.url}/api/auth/revoke"
    assert meta["introspection_endpoint_auth_methods_supported"] == ["client_secret_basic"]
    assert meta["revocation_endpoint_auth_methods_supported"] == ["none"]
    assert meta["access_token_signing_alg_values_supported"] == ["HS256"]
    cache = answer.headers["Cache-Control"]
    assert cache.startswith("public") and "max-age=" in cache
    # the URLs it names are the live endpoints
    pair = await login_at(http, user)
    async with httpx.AsyncClient(timeout=10) as anywhere:
        described = await anywhere.post(
            meta["introspection_endpoint"], data={"token": pair["access"]}, headers=GOOD
        )
        assert described.json()["active"] is True
        revoked = await anywhere.post(meta["revocation_endpoint"], data={"token": pair["refresh"]})
        assert revoked.status_code == 200
        assert (await anywhere.get(meta["jwks_uri"])).status_code == 404  # HMAC: no public keys


async def test_metadata_follows_the_host_and_refuses_a_foreign_one(http, server):
    port = server.port
    local = await http.get(
        "/.well-known/oauth-authorization-server", headers={"Host": f"localhost:{port}"}
    )
    assert local.json()["issuer"] == f"http://localhost:{port}"
    assert local.json()["revocation_endpoint"] == f"http://localhost:{port}/api/auth/revoke"
    foreign = await http.get(
        "/.well-known/oauth-authorization-server", headers={"Host": "evil.example"}
    )
    assert foreign.status_code == 400
    assert foreign.json()["code"] == "bad_request"


async def test_metadata_uses_the_configured_issuer(client, authapi_settings):
    with authapi_settings(ISSUER="https://auth.example.com"):
        meta = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert meta["issuer"] == "https://auth.example.com"
    assert meta["introspection_endpoint"] == "https://auth.example.com/api/auth/introspect"
    with authapi_settings(ISSUER="my-auth-service"):  # a bare name: URLs from the request
        meta = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert meta["issuer"] == "my-auth-service"
    assert meta["jwks_uri"] == "http://127.0.0.1/.well-known/jwks.json"


async def test_openapi_documents_the_three(http):
    paths = (await http.get("/api/openapi.json")).json()["paths"]
    assert "post" in paths["/api/auth/introspect"]
    assert "post" in paths["/api/auth/revoke"]
    assert "get" in paths["/.well-known/oauth-authorization-server"]


# --- introspection: client authentication ----------------------------------------------


async def test_introspection_is_404_without_configured_clients(client, user):
    answer = await client.post("/api/auth/introspect", data={"token": "x"}, headers=GOOD)
    assert answer.status_code == 404
    assert answer.json()["code"] == "not_found"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("reporting", "wrong"),
        basic("reporting", SECRET, encode=False),  # '+' unencoded means a space
        basic("billing", SECRET),  # another client's id with this one's secret
        basic("nobody", SECRET),
        basic("reporting", ""),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:x").decode()},
        {"Authorization": f"Bearer {SECRET}"},
    ],
)
async def test_a_wrong_or_missing_client_is_401_with_a_basic_challenge(http, user, headers):
    pair = await login_at(http, user)
    answer = await introspect(http, pair["access"], headers=headers)
    assert answer.status_code == 401, answer.text
    assert answer.headers["WWW-Authenticate"].startswith("Basic realm=")
    body = answer.json()
    assert body["code"] == "invalid_client" and body["detail"]
    assert "active" not in body and "sub" not in body
    assert answer.headers["Cache-Control"] == "no-store"


async def test_each_configured_client_is_accepted(http, user):
    pair = await login_at(http, user)
    for headers in (GOOD, basic("billing", "other-secret-value")):
        answer = await introspect(http, pair["access"], headers=headers)
        assert answer.json()["active"] is True


@pytest.mark.parametrize("position", ["first", "last", "absent"])
def test_client_comparison_visits_every_client(authapi_settings, monkeypatch, position):
    """No early exit: as many constant-time comparisons whichever client (if any) matches."""
    calls = []
    real = hmac.compare_digest

    def counting(a, b):
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    clients = "a:secret-a,b:secret-b,c:secret-c"
    sent = {"first": ("a", "secret-a"), "last": ("c", "secret-c"), "absent": ("z", "z")}
    with authapi_settings(RESOURCE_CLIENTS=clients):
        found = oauth.match_client(*sent[position])
    assert found == {"first": "a", "last": "c", "absent": None}[position]
    assert len(calls) == 6


async def test_failed_client_auth_is_throttled_and_then_even_the_right_secret_waits(user):
    env = {"AUTHAPI_RESOURCE_CLIENTS": CLIENTS, "AUTHAPI_LOGIN_RATE": "3/min"}
    # a client id of its own: the counter is fresh whatever ran before
    name = f"throttle-{time.time_ns()}"
    env["AUTHAPI_RESOURCE_CLIENTS"] += f",{name}:right-secret"
    with LiveServer(env=env) as live:
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
            pair = await login_at(http, user)
            statuses = []
            for _ in range(5):
                answer = await introspect(http, pair["access"], headers=basic(name, "guess"))
                statuses.append(answer.status_code)
                assert answer.json()["code"] in {"invalid_client", "throttled"}
            assert statuses == [401, 401, 401, 429, 429]
            assert int(answer.headers["Retry-After"]) > 0
            right = await introspect(http, pair["access"], headers=basic(name, "right-secret"))
            assert right.status_code == 429
            assert "active" not in right.json()


# --- introspection: tokens -------------------------------------------------------------------


async def test_a_live_access_token_is_described(http, user):
    pair = await login_at(http, user)
    answer = await introspect(http, pair["access"])
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.json()
    claims = _claims(pair["access"])
    assert body == {
        "active": True,
        "sub": str(user.pk),
        "user_id": user.pk,
        "sid": claims["sid"],
        "jti": claims["jti"],
        "exp": claims["exp"],
        "iat": claims["iat"],
        "token_type": "Bearer",  # RFC 7662 2.2: the scheme it is used under
        "authapi_token_kind": "access",
        "amr": ["pwd"],  # RFC 8176: how the user logged in
    }
    as_json = await http.post(
        "/api/auth/introspect",
        json={"token": pair["access"], "token_type_hint": "access_token"},
        headers=GOOD,
    )
    assert as_json.json() == body


async def test_a_refresh_token_is_active_while_it_is_the_sessions_current_one(http, user):
    pair = await login_at(http, user)
    body = (await introspect(http, pair["refresh"])).json()
    assert body["active"] is True and body["authapi_token_kind"] == "refresh"
    assert body["token_type"] == "Bearer"
    nxt = (await http.post("/api/auth/refresh", json={"refresh": pair["refresh"]})).json()
    assert (await introspect(http, pair["refresh"])).json() == {"active": False}  # spent
    assert (await introspect(http, nxt["refresh"])).json()["active"] is True
    assert (await introspect(http, pair["access"])).json()["active"] is True  # access lives on


async def test_every_dead_token_is_exactly_inactive(http, user):
    pair = await login_at(http, user)
    key = keys.get().current
    claims = _claims(pair["access"])
    expired = jwt.encode(
        claims | {"exp": int(time.time()) - 5, "iat": int(time.time()) - 100},
        key.signing,
        algorithm=key.algorithm,
        headers={"kid": key.kid, "typ": "at+jwt"},
    )
    head, body, sig = pair["access"].split(".")
    tampered = f"{head}.{body}.{sig[:-4]}AAAA"
    foreign = jwt.encode(claims, "another-secret-" * 4, algorithm="HS256", headers={"kid": key.kid})
    for token in (expired, tampered, foreign, "garbage", "a.b.c", "x" * 9000, "é.é.é", "\x00"):
        answer = await introspect(http, token)
        assert answer.status_code == 200, (token[:20], answer.text)
        assert answer.json() == {"active": False}
    await http.post("/api/auth/logout", json={"refresh": pair["refresh"]})
    for token in (pair["access"], pair["refresh"]):
        assert (await introspect(http, token)).json() == {"active": False}


@pytest.mark.parametrize(
    "body",
    [{}, {"token": ""}, {"token": 5}, {"token": None}, {"token": ["a"]}, {"token_type_hint": "x"}],
)
async def test_introspection_without_a_token_is_400_invalid_request(http, body):
    answer = await http.post("/api/auth/introspect", json=body, headers=GOOD)
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "invalid_request" and answer.json()["detail"]


async def test_introspection_is_one_store_command(http, user):
    pair = await login_at(http, user)
    import os

    store = redis_sync.Redis.from_url(os.environ["REDIS_URL"])
    try:
        for token in (pair["access"], pair["refresh"]):
            await introspect(http, token)  # warm: script loading, connections
            store.config_resetstat()
            assert (await introspect(http, token)).json()["active"] is True
            stats = store.info("commandstats")
            ours = {
                name: v["calls"]
                for name, v in stats.items()
                if not name.startswith(("cmdstat_info", "cmdstat_config", "cmdstat_ping"))
            }
            assert sum(ours.values()) == 1, ours
    finally:
        store.close()


async def test_a_dead_store_is_503_never_inactive_nor_active(http, user):
    pair = await login_at(http, user)
    env = {"AUTHAPI_RESOURCE_CLIENTS": CLIENTS, "REDIS_URL": f"redis://127.0.0.1:{free_port()}"}
    with LiveServer(env=env) as dead:
        async with httpx.AsyncClient(base_url=dead.url, timeout=15) as http_dead:
            answer = await introspect(http_dead, pair["access"])
            assert answer.status_code == 503, answer.text
            assert answer.json()["code"] == "service_unavailable"
            assert "Retry-After" in answer.headers
            revoked = await http_dead.post("/api/auth/revoke", data={"token": pair["refresh"]})
            assert revoked.status_code == 503
    assert (await introspect(http, pair["access"])).json()["active"] is True  # nothing moved


# --- revocation -----------------------------------------------------------------------------


async def test_revoking_a_refresh_token_ends_its_session(http, user):
    pair = await login_at(http, user)
    answer = await http.post("/api/auth/revoke", data={"token": pair["refresh"]})
    assert answer.status_code == 200 and answer.json() == {}
    assert answer.headers["Cache-Control"] == "no-store"
    assert (await http.get("/api/auth/me", headers=bearer(pair["access"]))).status_code == 401
    assert (
        await http.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
    ).status_code == 401
    assert (await introspect(http, pair["access"])).json() == {"active": False}
    again = await http.post("/api/auth/revoke", json={"token": pair["refresh"]})
    assert again.status_code == 200  # already revoked: still 200


async def test_revoking_an_access_token_refuses_it_at_once(http, user):
    pair = await login_at(http, user)
    answer = await http.post(
        "/api/auth/revoke", json={"token": pair["access"], "token_type_hint": "access_token"}
    )
    assert answer.status_code == 200
    assert (await http.get("/api/auth/me", headers=bearer(pair["access"]))).status_code == 401
    assert (await introspect(http, pair["access"])).json() == {"active": False}
    # as logout's Bearer token: the token, not its session (documented)
    nxt = await http.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
    assert nxt.status_code == 200
    assert (await http.get("/api/auth/me", headers=bearer(nxt.json()["access"]))).status_code == 200


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 9000, "\x00", "é"])
async def test_revoking_anything_else_is_200(http, token):
    answer = await http.post("/api/auth/revoke", data={"token": token})
    assert answer.status_code == 200 and answer.json() == {}


@pytest.mark.parametrize("body", [{}, {"token": ""}, {"token": 5}, {"token_type_hint": "x"}])
async def test_revocation_without_a_token_is_400_invalid_request(http, body):
    answer = await http.post("/api/auth/revoke", json=body)
    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid_request" and answer.json()["detail"]


async def test_revocation_with_wrong_basic_credentials_is_401(http, user):
    pair = await login_at(http, user)
    wrong = await http.post(
        "/api/auth/revoke", data={"token": pair["refresh"]}, headers=basic("reporting", "nope")
    )
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"].startswith("Basic")
    assert (await http.get("/api/auth/me", headers=bearer(pair["access"]))).status_code == 200
    right = await http.post("/api/auth/revoke", data={"token": pair["refresh"]}, headers=GOOD)
    assert right.status_code == 200
    assert (await http.get("/api/auth/me", headers=bearer(pair["access"]))).status_code == 401


async def test_revoke_racing_refresh_leaves_no_live_token(http, user):
    for _ in range(5):
        pair = await login_at(http, user)
        revoked, refreshed = await asyncio.gather(
            http.post("/api/auth/revoke", data={"token": pair["refresh"]}),
            http.post("/api/auth/refresh", json={"refresh": pair["refresh"]}),
        )
        assert revoked.status_code == 200
        live = [pair["access"]]
        if refreshed.status_code == 200:
            live.append(refreshed.json()["access"])
        for token in live:
            assert (await http.get("/api/auth/me", headers=bearer(token))).status_code == 401


async def test_revocation_emits_logouts_event(client, user, caplog):
    caplog.set_level("INFO", logger="authapi.security")
    pair = (
        await client.post("/api/auth/login", json={"username": user.username, "password": PASSWORD})
    ).json()
    answer = await client.post("/api/auth/revoke", data={"token": pair["refresh"]})
    assert answer.status_code == 200
    events = [r.security for r in caplog.records if hasattr(r, "security")]
    ended = [e for e in events if e["event"] == "session_revoked"]
    assert len(ended) == 1 and ended[0]["reason"] == "logout"
    assert ended[0]["session_id"] == _claims(pair["refresh"])["sid"]
    assert pair["refresh"] not in caplog.text and pair["access"] not in caplog.text


@pytest.mark.parametrize("value", ["no-colon", "id:", ":secret", "a:b,,broken-secret-x"])
def test_malformed_resource_clients_are_a_config_error_naming_no_secret(value):
    from django.core.exceptions import ImproperlyConfigured

    from authapi import conf

    with pytest.raises(ImproperlyConfigured) as caught:
        conf.from_mapping({"RESOURCE_CLIENTS": value})
    assert "RESOURCE_CLIENTS" in str(caught.value)
    assert "secret" not in str(caught.value).replace("client_id:secret", "")


def test_resource_clients_parse_secrets_with_colons():
    from authapi import conf

    parsed = conf.from_mapping({"RESOURCE_CLIENTS": CLIENTS}).resource_clients
    assert parsed == (("reporting", SECRET), ("billing", "other-secret-value"))
    assert SECRET not in repr(conf.from_mapping({"RESOURCE_CLIENTS": CLIENTS}))


async def test_an_issuer_with_a_path_has_its_metadata_after_the_well_known_prefix(
    client, authapi_settings
):
    with authapi_settings(ISSUER="https://auth.example.com/tenant-a"):
        meta = await client.get("/.well-known/oauth-authorization-server/tenant-a")
        assert meta.status_code == 200
        assert meta.json()["issuer"] == "https://auth.example.com/tenant-a"
        assert meta.headers["Cache-Control"].startswith("public")
        other = await client.get("/.well-known/oauth-authorization-server/tenant-b")
        assert other.status_code == 404 and other.json()["code"] == "not_found"
    plain = await client.get("/.well-known/oauth-authorization-server/tenant-a")
    assert plain.status_code == 404  # no issuer path configured


async def test_introspection_shows_iss_and_aud_when_configured(client, user, authapi_settings):
    with authapi_settings(
        ISSUER="https://auth.example.com", AUDIENCE="orders,billing", RESOURCE_CLIENTS=CLIENTS
    ):
        pair = (
            await client.post(
                "/api/auth/login", json={"username": user.username, "password": PASSWORD}
            )
        ).json()
        body = (await introspect(client, pair["access"])).json()
    assert body["active"] is True
    assert body["iss"] == "https://auth.example.com"
    assert body["aud"] == ["orders", "billing"]
    # a token of another issuer (settings changed back) is just inactive
    with authapi_settings(ISSUER="https://elsewhere.example.com", RESOURCE_CLIENTS=CLIENTS):
        assert (await introspect(client, pair["access"])).json() == {"active": False}

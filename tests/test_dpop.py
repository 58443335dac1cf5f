"""DPoP (RFC 9449) over HTTP: a login with a proof binds its session to the client's key; a
token copied from such a session is refused everywhere without that key. Proofs come from
tests/dpop_client.py, which shares no code with the server."""

from __future__ import annotations

import asyncio
import time

import httpx
import jwt
import pytest

from authapi import dpop
from tests.conftest import PASSWORD, LiveServer, bearer
from tests.dpop_client import Key

BASE = "http://127.0.0.1"
LOGIN = f"{BASE}/api/auth/login"
REFRESH = f"{BASE}/api/auth/refresh"
ME = f"{BASE}/api/auth/me"


async def bound_login(client, user, key, **proof_kw):
    response = await client.post(
        "/api/auth/login",
        json={"username": user.username, "password": PASSWORD},
        headers={"DPoP": key.proof("POST", LOGIN, **proof_kw)},
    )
    assert response.status_code == 200, response.text
    return response.json()


def dpop_headers(key, token, method="GET", url=ME, **kw):
    return {"Authorization": f"DPoP {token}", "DPoP": key.proof(method, url, token=token, **kw)}


@pytest.mark.parametrize("alg", dpop.ALGORITHMS)
async def test_a_login_with_a_proof_binds_both_tokens(client, user, alg):
    key = Key(alg)
    pair = await bound_login(client, user, key)
    assert pair["token_type"] == "DPoP"
    for name in ("access", "refresh"):
        claims = jwt.decode(pair[name], options={"verify_signature": False})
        assert claims["cnf"] == {"jkt": key.thumbprint}
    me = await client.get("/api/auth/me", headers=dpop_headers(key, pair["access"]))
    assert me.status_code == 200, me.text
    assert me.json()["username"] == user.username


async def test_a_login_without_a_proof_stays_bearer(client, user):
    response = await client.post(
        "/api/auth/login", json={"username": user.username, "password": PASSWORD}
    )
    pair = response.json()
    assert pair["token_type"] == "Bearer"
    assert "cnf" not in jwt.decode(pair["access"], options={"verify_signature": False})
    assert (await client.get("/api/auth/me", headers=bearer(pair["access"]))).status_code == 200
    # An unbound token is not DPoP: sent under that scheme it is refused.
    key = Key()
    refused = await client.get("/api/auth/me", headers=dpop_headers(key, pair["access"]))
    assert refused.status_code == 401


async def test_a_stolen_bound_token_is_refused_without_the_key(client, user):
    key, thief = Key(), Key()
    pair = await bound_login(client, user, key)
    access = pair["access"]
    attempts = {
        "as bearer": bearer(access),
        "dpop without proof": {"Authorization": f"DPoP {access}"},
        "thief's key": dpop_headers(thief, access),
        "proof for another path": dpop_headers(key, access, url=f"{BASE}/api/auth/sessions"),
        "proof for another method": dpop_headers(key, access, method="POST"),
        "proof for another token": {
            "Authorization": f"DPoP {access}",
            "DPoP": key.proof("GET", ME, token="other.token.here"),
        },
        "stale proof": dpop_headers(key, access, iat=time.time() - 600),
        "future proof": dpop_headers(key, access, iat=time.time() + 600),
        "two proofs": {
            "Authorization": f"DPoP {access}",
            "DPoP": key.proof("GET", ME, token=access) + "," + key.proof("GET", ME, token=access),
        },
    }
    for name, headers in attempts.items():
        response = await client.get("/api/auth/me", headers=headers)
        assert response.status_code == 401, (name, response.text)
        body = response.json()
        assert body["code"] in ("invalid_dpop_proof", "token_not_valid"), (name, body)
        assert "DPoP" in response.headers["WWW-Authenticate"], name
    # The owner is unaffected.
    ok = await client.get("/api/auth/me", headers=dpop_headers(key, access))
    assert ok.status_code == 200


async def test_a_replayed_proof_is_refused(client, user):
    key = Key()
    pair = await bound_login(client, user, key)
    headers = dpop_headers(key, pair["access"])
    assert (await client.get("/api/auth/me", headers=headers)).status_code == 200
    again = await client.get("/api/auth/me", headers=headers)
    assert again.status_code == 401
    assert again.json()["code"] == "invalid_dpop_proof"


async def test_concurrent_replays_pass_once(client, user):
    key = Key()
    pair = await bound_login(client, user, key)
    headers = dpop_headers(key, pair["access"])
    answers = await asyncio.gather(
        *[client.get("/api/auth/me", headers=headers) for _ in range(20)]
    )
    assert sorted(a.status_code for a in answers) == [200] + [401] * 19


async def test_refresh_needs_the_key_and_a_refusal_spends_nothing(client, user, caplog):
    key, thief = Key(), Key()
    pair = await bound_login(client, user, key)
    refresh = pair["refresh"]
    for headers in (
        {},
        {"DPoP": thief.proof("POST", REFRESH)},
        {"DPoP": key.proof("GET", REFRESH)},
    ):
        refused = await client.post("/api/auth/refresh", json={"refresh": refresh}, headers=headers)
        assert refused.status_code == 400, refused.text
        assert refused.json()["code"] == "invalid_dpop_proof"
    # The simplejwt alias is the same view.
    alias = await client.post("/api/token/refresh/", json={"refresh": refresh})
    assert alias.status_code == 400
    # Not spent: the owner refreshes with a proof, and the new pair is bound too.
    ok = await client.post(
        "/api/auth/refresh", json={"refresh": refresh}, headers={"DPoP": key.proof("POST", REFRESH)}
    )
    assert ok.status_code == 200, ok.text
    nxt = ok.json()
    assert nxt["token_type"] == "DPoP"
    assert jwt.decode(nxt["access"], options={"verify_signature": False})["cnf"]["jkt"] == (
        key.thumbprint
    )
    assert (
        await client.get("/api/auth/me", headers=dpop_headers(key, nxt["access"]))
    ).status_code == 200


async def test_a_refresh_proof_is_good_once(client, user):
    key = Key()
    pair = await bound_login(client, user, key)
    proof = key.proof("POST", REFRESH)
    first = await client.post(
        "/api/auth/refresh", json={"refresh": pair["refresh"]}, headers={"DPoP": proof}
    )
    assert first.status_code == 200
    second = await client.post(
        "/api/auth/refresh", json={"refresh": first.json()["refresh"]}, headers={"DPoP": proof}
    )
    assert second.status_code == 400
    assert "used before" in second.json()["detail"]


async def test_a_login_proof_that_fails_is_refused_before_the_password(client, user):
    key = Key()
    for proof in (
        key.proof("POST", f"{BASE}/api/auth/refresh"),
        key.proof("POST", LOGIN, header={"typ": "JWT"}),
        key.proof("POST", LOGIN, header={"jwk": key.private_jwk}),
        "not-a-proof",
    ):
        response = await client.post(
            "/api/auth/login",
            json={"username": user.username, "password": "wrong"},
            headers={"DPoP": proof},
        )
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "invalid_dpop_proof"
        assert "WWW-Authenticate" not in response.headers


async def test_modes_required_and_off(client, user, authapi_settings):
    key = Key()
    with authapi_settings(DPOP="required"):
        plain = await client.post(
            "/api/auth/login", json={"username": user.username, "password": PASSWORD}
        )
        assert plain.status_code == 400
        assert plain.json()["code"] == "invalid_dpop_proof"
        assert (await bound_login(client, user, key))["token_type"] == "DPoP"
    with authapi_settings(DPOP="off"):
        pair = await bound_login(client, user, key)
        assert pair["token_type"] == "Bearer"


async def test_nonces_when_on(client, user, authapi_settings):
    key = Key()
    with authapi_settings(DPOP_NONCE="1"):
        first = await client.post(
            "/api/auth/login",
            json={"username": user.username, "password": PASSWORD},
            headers={"DPoP": key.proof("POST", LOGIN)},
        )
        assert first.status_code == 400
        assert first.json()["code"] == "use_dpop_nonce"
        nonce = first.headers["DPoP-Nonce"]
        pair = await bound_login(client, user, key, nonce=nonce)
        access = pair["access"]
        no_nonce = await client.get("/api/auth/me", headers=dpop_headers(key, access))
        assert no_nonce.status_code == 401
        assert 'error="use_dpop_nonce"' in no_nonce.headers["WWW-Authenticate"]
        assert no_nonce.headers["DPoP-Nonce"] == nonce
        ok = await client.get("/api/auth/me", headers=dpop_headers(key, access, nonce=nonce))
        assert ok.status_code == 200


async def test_a_bound_access_check_is_one_store_command(client, user, redis):
    """The proof's jti claim rides in the revocation read: one command per check."""
    import redis as redis_lib

    key = Key()
    pair = await bound_login(client, user, key)
    counter = redis_lib.Redis.from_url(redis.url)
    try:
        counter.config_resetstat()
        for _ in range(5):
            headers = dpop_headers(key, pair["access"])
            assert (await client.get("/api/auth/me", headers=headers)).status_code == 200
        stats = counter.info("commandstats")
    finally:
        counter.close()
    calls = {name: v["calls"] for name, v in stats.items() if not name.startswith("cmdstat_config")}
    # One EVALSHA per check from the service; the HMGET and SET run inside that script.
    assert calls == {"cmdstat_evalsha": 5, "cmdstat_hmget": 5, "cmdstat_set": 5}, calls


async def test_logout_ends_a_bound_session(client, user):
    key = Key()
    pair = await bound_login(client, user, key)
    logout = f"{BASE}/api/auth/logout"
    copy = await client.post("/api/auth/logout", json={"refresh": pair["refresh"]})
    assert copy.status_code == 401  # without the key: refused (tests/test_dpop_doors.py)
    assert copy.json()["code"] == "invalid_dpop_proof"
    out = await client.post(
        "/api/auth/logout",
        json={"refresh": pair["refresh"]},
        headers={"DPoP": key.proof("POST", logout)},
    )
    assert out.status_code == 204
    gone = await client.get("/api/auth/me", headers=dpop_headers(key, pair["access"]))
    assert gone.status_code == 401
    assert gone.json()["code"] == "token_not_valid"


async def test_cookies_never_carry_a_bound_pair(client, user, authapi_settings):
    key = Key()
    with authapi_settings(COOKIES="1"):
        response = await client.post(
            "/api/auth/login",
            json={"username": user.username, "password": PASSWORD},
            headers={"DPoP": key.proof("POST", LOGIN), "Origin": BASE},
        )
    assert response.status_code == 200
    assert not response.cookies
    assert response.json()["refresh"]


def test_replays_across_two_workers_pass_once(user):
    """Two uvicorn workers share the store: one proof sent to both is accepted once."""
    key = Key()
    with LiveServer("--workers", "2") as server, httpx.Client(base_url=server.url) as http:
        url = f"{server.url}/api/auth/login"
        pair = http.post(
            "/api/auth/login",
            json={"username": user.username, "password": PASSWORD},
            headers={"DPoP": key.proof("POST", url)},
        ).json()
        me = f"{server.url}/api/auth/me"
        headers = {
            "Authorization": f"DPoP {pair['access']}",
            "DPoP": key.proof("GET", me, token=pair["access"]),
        }
        codes = []
        for _ in range(8):  # new connections: they spread over both workers
            with httpx.Client(base_url=server.url) as fresh:
                codes.append(fresh.get("/api/auth/me", headers=headers).status_code)
        assert sorted(codes) == [200] + [401] * 7
        bearer_try = http.get("/api/auth/me", headers=bearer(pair["access"]))
        assert bearer_try.status_code == 401


def test_a_proof_replayed_at_another_instance_is_refused(user):
    """Two separate services on one store: a proof's jti spent at one is spent at the
    other (each proof names its own instance's URL, as a client of both would sign)."""
    key = Key()
    with LiveServer() as first, LiveServer() as second:
        with httpx.Client() as http:
            url = f"{first.url}/api/auth/login"
            pair = http.post(
                url,
                json={"username": user.username, "password": PASSWORD},
                headers={"DPoP": key.proof("POST", url)},
            ).json()
            access = pair["access"]
            # The same jti, each proof for its own instance's URL: the second use is a replay.
            jti = "shared-jti-" + str(time.time_ns())
            for server, expected in ((first, 200), (second, 401)):
                me = f"{server.url}/api/auth/me"
                headers = {
                    "Authorization": f"DPoP {access}",
                    "DPoP": key.proof("GET", me, token=access, claims={"jti": jti}),
                }
                answer = http.get(me, headers=headers)
                assert answer.status_code == expected, (server.url, answer.text)
            # A fresh proof works at the second: the token itself is fine there.
            me = f"{second.url}/api/auth/me"
            fresh = {"Authorization": f"DPoP {access}", "DPoP": key.proof("GET", me, token=access)}
            assert http.get(me, headers=fresh).status_code == 200


async def test_the_metadata_lists_the_proof_algorithms_unless_off(client, authapi_settings):
    answer = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert answer["dpop_signing_alg_values_supported"] == list(dpop.ALGORITHMS)
    assert not {"HS256", "HS384", "HS512", "none"} & set(
        answer["dpop_signing_alg_values_supported"]
    )
    with authapi_settings(DPOP="off"):
        off = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert "dpop_signing_alg_values_supported" not in off


async def test_introspection_shows_the_binding(client, user, authapi_settings):
    import base64

    key = Key()
    secret = "introspection-secret-0123456789"
    basic = base64.b64encode(f"orders:{secret}".encode()).decode()
    with authapi_settings(RESOURCE_CLIENTS=f"orders:{secret}"):
        pair = await bound_login(client, user, key)
        answer = await client.post(
            "/api/auth/introspect",
            data={"token": pair["access"]},
            headers={"Authorization": f"Basic {basic}"},
        )
    body = answer.json()
    assert body["active"] is True
    assert body["cnf"] == {"jkt": key.thumbprint}


async def test_no_bad_proof_is_ever_a_500(client, user):
    """Every refused proof of the unit tests, sent over HTTP at /me and at refresh."""
    from tests.test_dpop_proofs import BAD

    key = Key()
    pair = await bound_login(client, user, key)
    access = pair["access"]
    for name, make in BAD.items():
        proof = make(key).replace("https://api.example.com", BASE)
        me = await client.get(
            "/api/auth/me", headers={"Authorization": f"DPoP {access}", "DPoP": proof}
        )
        assert me.status_code == 401, (name, me.text)
        assert me.json()["code"] in ("invalid_dpop_proof", "token_not_valid"), name
    for junk in ("", "a.b.c", "x" * 5000, "é.é.é", "..", "a" * 40):
        raw = junk.encode()  # as sent on the wire: UTF-8 bytes
        me = await client.get(
            "/api/auth/me", headers={"Authorization": f"DPoP {access}", "DPoP": raw}
        )
        assert me.status_code == 401, (junk[:10], me.text)
        refreshed = await client.post(
            "/api/auth/refresh", json={"refresh": pair["refresh"]}, headers={"DPoP": raw}
        )
        assert refreshed.status_code == 400, refreshed.text
    # The owner's key still works afterwards: nothing was spent.
    assert (await client.get("/api/auth/me", headers=dpop_headers(key, access))).status_code == 200

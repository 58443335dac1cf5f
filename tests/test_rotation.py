"""Refresh rotation, reuse detection, logout and verify, over HTTP against real Redis."""

from __future__ import annotations

import asyncio

import jwt
import pytest

from tests.conftest import alive, bearer, login


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


async def _refresh(client, token: str, *, form: bool = False):
    if form:
        return await client.post("/api/auth/refresh", data={"refresh": token})
    return await client.post("/api/auth/refresh", json={"refresh": token})


async def _verify(client, token: str) -> int:
    return (await client.post("/api/auth/verify", json={"token": token})).status_code


@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
async def test_refresh_returns_next_pair_of_same_session(client, user, form):
    pair = await login(client, user)
    response = await _refresh(client, pair["refresh"], form=form)
    assert response.status_code == 200, response.text
    nxt = response.json()
    assert set(nxt) == {"access", "refresh", "token_type", "expires_in", "refresh_expires_in"}
    old, new = _claims(pair["refresh"]), _claims(nxt["refresh"])
    assert new["sid"] == old["sid"] and new["jti"] != old["jti"]
    assert _claims(nxt["access"])["sid"] == old["sid"]
    assert await alive(client, nxt["access"])
    # the access token of before the refresh stays valid until it expires
    assert await alive(client, pair["access"])
    # the spent refresh token no longer verifies; the new one does
    assert await _verify(client, pair["refresh"]) == 401
    assert await _verify(client, nxt["refresh"]) == 200


async def test_a_chain_of_refreshes(client, user):
    pair = await login(client, user)
    for _ in range(5):
        response = await _refresh(client, pair["refresh"])
        assert response.status_code == 200
        pair = response.json()
    assert await alive(client, pair["access"])


async def test_reuse_kills_the_whole_family(client, user):
    first = await login(client, user)
    second = (await _refresh(client, first["refresh"])).json()
    third = (await _refresh(client, second["refresh"])).json()

    reused = await _refresh(client, first["refresh"])
    assert reused.status_code == 401
    assert reused.json()["code"] == "token_not_valid"
    assert 'error="invalid_token"' in reused.headers["WWW-Authenticate"]

    # the newest refresh token, and every access token of the session, are dead
    assert (await _refresh(client, third["refresh"])).status_code == 401
    for access in (first["access"], second["access"], third["access"]):
        assert not await alive(client, access)
        assert await _verify(client, access) == 401
    assert await _verify(client, third["refresh"]) == 401


async def test_reuse_leaves_other_sessions_alone(client, user):
    victim = await login(client, user)
    other = await login(client, user)
    await _refresh(client, victim["refresh"])
    assert (await _refresh(client, victim["refresh"])).status_code == 401
    assert await alive(client, other["access"])
    assert (await _refresh(client, other["refresh"])).status_code == 200


async def test_twenty_concurrent_refreshes_exactly_one_succeeds(client, user):
    pair = await login(client, user)
    responses = await asyncio.gather(*[_refresh(client, pair["refresh"]) for _ in range(20)])
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [401] * 19, statuses
    for r in responses:
        assert r.headers["Content-Type"].startswith("application/json")
    # the losers were reuse: the session, with the winner's tokens, is revoked
    winner = next(r.json() for r in responses if r.status_code == 200)
    assert not await alive(client, winner["access"])


async def test_twenty_concurrent_refreshes_over_a_live_server(live_server, client, user):
    """Same rule through uvicorn and its own connections, not only in one ASGI app call."""
    import httpx

    pair = await login(client, user)
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        responses = await asyncio.gather(
            *[http.post("/api/auth/refresh", json={"refresh": pair["refresh"]}) for _ in range(20)]
        )
    assert sorted(r.status_code for r in responses) == [200] + [401] * 19


@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
async def test_logout_without_bearer_kills_session_and_its_access_tokens(client, user, form):
    pair = await login(client, user)
    if form:
        out = await client.post("/api/auth/logout", data={"refresh": pair["refresh"]})
    else:
        out = await client.post("/api/auth/logout", json={"refresh": pair["refresh"]})
    assert out.status_code == 204 and out.content == b""
    assert not await alive(client, pair["access"])
    assert (await _refresh(client, pair["refresh"])).status_code == 401


async def test_logout_with_bearer_of_another_session_kills_that_access_token_too(client, user):
    phone = await login(client, user)
    laptop = await login(client, user)
    out = await client.post(
        "/api/auth/logout", json={"refresh": phone["refresh"]}, headers=bearer(laptop["access"])
    )
    assert out.status_code == 204
    assert not await alive(client, phone["access"])
    assert not await alive(client, laptop["access"])
    # the laptop session itself lives on: its refresh token still works
    assert (await _refresh(client, laptop["refresh"])).status_code == 200


async def test_logout_twice_is_401(client, user):
    pair = await login(client, user)
    assert (await client.post("/api/auth/logout", json={"refresh": pair["refresh"]})).is_success
    again = await client.post("/api/auth/logout", json={"refresh": pair["refresh"]})
    assert again.status_code == 401
    assert again.json()["code"] == "token_not_valid"


async def test_logout_with_a_bad_bearer_still_logs_out(client, user):
    pair = await login(client, user)
    out = await client.post(
        "/api/auth/logout", json={"refresh": pair["refresh"]}, headers=bearer("garbage")
    )
    assert out.status_code == 204
    assert not await alive(client, pair["access"])


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/auth/refresh", {}),
        ("/api/auth/refresh", {"refresh": ""}),
        ("/api/auth/refresh", {"refresh": 12}),
        ("/api/auth/refresh", {"refresh": None}),
        ("/api/auth/refresh", {"token": "x"}),
        ("/api/auth/logout", {}),
        ("/api/auth/logout", {"refresh": ["a"]}),
        ("/api/auth/verify", {}),
        ("/api/auth/verify", {"token": {"a": 1}}),
        ("/api/auth/verify", {"refresh": "x"}),
    ],
)
async def test_missing_or_wrong_fields_are_422(client, path, body):
    response = await client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid"


@pytest.mark.parametrize("path", ["/api/auth/refresh", "/api/auth/logout", "/api/auth/verify"])
@pytest.mark.parametrize(
    ("content", "content_type"),
    [(b"{oops", "application/json"), (b"refresh=x", "text/plain"), (b"null", "application/json")],
    ids=["malformed-json", "text-plain", "json-null"],
)
async def test_malformed_bodies_are_400(client, path, content, content_type):
    response = await client.post(path, content=content, headers={"Content-Type": content_type})
    assert response.status_code == (415 if content_type == "text/plain" else 400), response.text
    assert set(response.json()) >= {"detail", "code"}


@pytest.mark.parametrize("path", ["/api/auth/refresh", "/api/auth/logout", "/api/auth/verify"])
async def test_bodies_over_16k_are_413(client, path):
    response = await client.post(path, json={"refresh": "x" * 17000, "token": "x"})
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


async def test_verify_accepts_both_types_and_honours_revocation(client, user):
    pair = await login(client, user)
    assert await _verify(client, pair["access"]) == 200
    assert await _verify(client, pair["refresh"]) == 200
    form = await client.post("/api/auth/verify", data={"token": pair["access"]})
    assert form.status_code == 200 and form.json() == {}
    await client.post("/api/auth/logout", json={"refresh": pair["refresh"]})
    for token in (pair["access"], pair["refresh"]):
        response = await client.post("/api/auth/verify", json={"token": token})
        assert response.status_code == 401
        assert response.json() == {"detail": "Token has been revoked", "code": "token_not_valid"}


async def test_verify_spends_nothing(client, user):
    pair = await login(client, user)
    for _ in range(3):
        assert await _verify(client, pair["refresh"]) == 200
    assert (await _refresh(client, pair["refresh"])).status_code == 200


async def test_simplejwt_aliases_follow_the_same_rules(client, user):
    pair = (
        await client.post(
            "/api/token/", data={"username": user.username, "password": "correct horse battery"}
        )
    ).json()
    nxt = await client.post("/api/token/refresh/", data={"refresh": pair["refresh"]})
    assert nxt.status_code == 200
    reused = await client.post("/api/token/refresh/", json={"refresh": pair["refresh"]})
    assert reused.status_code == 401
    assert reused.json()["code"] == "token_not_valid"
    dead = await client.post("/api/token/verify/", json={"token": nxt.json()["access"]})
    assert dead.status_code == 401
    assert (await client.post("/api/token/refresh/", json={})).status_code == 400  # as simplejwt


async def test_a_retried_rotation_is_answered_again_not_taken_for_reuse(client, user):
    """redis-py retries a script whose reply was lost; the same call must not kill the family."""
    from authapi import store, tokens, users

    pair = await login(client, user)
    claims = _claims(pair["refresh"])
    now = int(tokens.now())
    call = {
        "user_id": claims["user_id"], "sid": claims["sid"], "jti": claims["jti"],
        "new_jti": tokens.new_id(), "now_ms": now * 1000, "refresh_exp": now + 600,
        "access_exp": now + 60, "reuse_interval_ms": 0, "user_agent": "t", "ip": "127.0.0.1",
        "password_mark": users.password_mark(user),
    }  # fmt: skip
    first = await store.rotate(**call)
    again = await store.rotate(**call)
    assert first.outcome == again.outcome == "ok"
    assert first.jti == again.jti == call["new_jti"]
    assert await alive(client, pair["access"])
    other = await store.rotate(**{**call, "new_jti": tokens.new_id()})
    assert other.outcome == "reuse"


async def test_rotation_rules_hold_across_two_uvicorn_workers(client, make_user):
    """Two worker processes, fresh connections each (so both serve): the rules are Redis's."""
    import httpx

    from tests.conftest import LiveServer

    users = [await make_user() for _ in range(5)]
    with LiveServer("--workers", "2") as server:
        pairs = [await login(client, u) for u in users]

        async def one(refresh: str) -> int:
            async with httpx.AsyncClient(base_url=server.url) as fresh:
                response = await fresh.post("/api/auth/refresh", json={"refresh": refresh})
                return response.status_code

        for pair in pairs:
            statuses = await asyncio.gather(*[one(pair["refresh"]) for _ in range(10)])
            assert sorted(statuses) == [200] + [401] * 9, statuses
        # a logout through one worker is seen by the other at once
        fresh_pair = await login(client, users[0])
        async with httpx.AsyncClient(base_url=server.url) as http:
            out = await http.post("/api/auth/logout", json={"refresh": fresh_pair["refresh"]})
            assert out.status_code == 204
        for _ in range(6):
            async with httpx.AsyncClient(base_url=server.url) as fresh:
                response = await fresh.get("/api/auth/me", headers=bearer(fresh_pair["access"]))
                assert response.status_code == 401

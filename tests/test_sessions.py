"""Logout everywhere and the sessions API: what a user sees and ends, and only their own."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from tests.conftest import alive, bearer, login


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


async def _refreshes(client, refresh: str) -> bool:
    response = await client.post("/api/auth/refresh", json={"refresh": refresh})
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


# --- logout-all -------------------------------------------------------------------------


async def test_logout_all_ends_every_session_of_the_user_only(client, make_user):
    alice, bob = await make_user(), await make_user()
    # several sessions minted in the same second, right before the logout
    pairs = await asyncio.gather(*[login(client, alice) for _ in range(4)])
    assert len({_claims(p["access"])["iat"] for p in pairs}) <= 2
    bobs = await login(client, bob)
    out = await client.post("/api/auth/logout-all", headers=bearer(pairs[0]["access"]))
    assert out.status_code == 204 and out.content == b""
    for pair in pairs:
        assert not await alive(client, pair["access"])
        assert not await _refreshes(client, pair["refresh"])
    assert await alive(client, bobs["access"])
    # a login right after works, in the same second
    fresh = await login(client, alice)
    assert await alive(client, fresh["access"])
    assert await _refreshes(client, fresh["refresh"])


async def test_logout_all_needs_a_valid_bearer(client, user):
    pair = await login(client, user)
    missing = await client.post("/api/auth/logout-all")
    assert missing.status_code == 401 and missing.json()["code"] == "not_authenticated"
    wrong_type = await client.post("/api/auth/logout-all", headers=bearer(pair["refresh"]))
    assert wrong_type.status_code == 401 and wrong_type.json()["code"] == "token_not_valid"
    assert await alive(client, pair["access"])


async def test_logout_all_is_seen_by_another_server_process(client, live_server, user):
    """Revocation is in Redis: a second service process refuses the token at once."""
    import httpx

    pair = await login(client, user)
    async with httpx.AsyncClient(base_url=live_server.url) as other:
        assert (await other.get("/api/auth/me", headers=bearer(pair["access"]))).is_success
        out = await client.post("/api/auth/logout-all", headers=bearer(pair["access"]))
        assert out.status_code == 204
        response = await other.get("/api/auth/me", headers=bearer(pair["access"]))
        assert response.status_code == 401


# --- the sessions API ---------------------------------------------------------------------


def _iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.utcoffset() == timedelta(0), value
    return parsed


async def test_list_sessions_shows_fields_and_current(client, user):
    phone = await login(client, user, headers={"User-Agent": "phone/1.0"})
    laptop = await login(client, user, headers={"User-Agent": "laptop/2.0"})
    response = await client.get("/api/auth/sessions", headers=bearer(laptop["access"]))
    assert response.status_code == 200
    sessions = response.json()
    assert [s["id"] for s in sessions] == [
        _claims(phone["access"])["sid"],
        _claims(laptop["access"])["sid"],
    ]
    now = datetime.now(tz=UTC)
    for s in sessions:
        assert {"id", "created_at", "last_used_at", "user_agent", "ip", "current"} <= set(s)
        assert abs(_iso(s["created_at"]) - now) < timedelta(seconds=30)
        assert _iso(s["last_used_at"]) >= _iso(s["created_at"])
        assert s["ip"] == "127.0.0.1"
    assert [s["user_agent"] for s in sessions] == ["phone/1.0", "laptop/2.0"]
    assert [s["current"] for s in sessions] == [False, True]


async def test_refresh_moves_last_used_and_keeps_the_id(client, user, clock):
    pair = await login(client, user)
    before = (await client.get("/api/auth/sessions", headers=bearer(pair["access"]))).json()
    clock.shift(30)
    nxt = (await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})).json()
    after = (await client.get("/api/auth/sessions", headers=bearer(nxt["access"]))).json()
    assert [s["id"] for s in after] == [s["id"] for s in before]
    assert after[0]["created_at"] == before[0]["created_at"]
    assert _iso(after[0]["last_used_at"]) - _iso(before[0]["last_used_at"]) >= timedelta(seconds=29)


async def test_listing_leaves_out_ended_sessions(client, user):
    keep = await login(client, user)
    gone = await login(client, user)
    await client.post("/api/auth/logout", json={"refresh": gone["refresh"]})
    listed = (await client.get("/api/auth/sessions", headers=bearer(keep["access"]))).json()
    assert [s["id"] for s in listed] == [_claims(keep["access"])["sid"]]


async def test_delete_one_session(client, user):
    keep = await login(client, user)
    end = await login(client, user)
    sid = _claims(end["access"])["sid"]
    response = await client.delete(f"/api/auth/sessions/{sid}", headers=bearer(keep["access"]))
    assert response.status_code == 204
    assert not await alive(client, end["access"])
    assert not await _refreshes(client, end["refresh"])
    assert await alive(client, keep["access"])
    again = await client.delete(f"/api/auth/sessions/{sid}", headers=bearer(keep["access"]))
    assert again.status_code == 404 and again.json()["code"] == "not_found"


async def test_delete_the_current_session(client, user):
    pair = await login(client, user)
    sid = _claims(pair["access"])["sid"]
    response = await client.delete(f"/api/auth/sessions/{sid}", headers=bearer(pair["access"]))
    assert response.status_code == 204
    assert not await alive(client, pair["access"])


async def test_another_users_session_is_404_and_untouched(client, make_user):
    alice, mallory = await make_user(), await make_user()
    victim = await login(client, alice)
    attacker = await login(client, mallory)
    sid = _claims(victim["access"])["sid"]
    response = await client.delete(f"/api/auth/sessions/{sid}", headers=bearer(attacker["access"]))
    assert response.status_code == 404
    assert response.json() == {"detail": "No such session.", "code": "not_found"}
    assert await alive(client, victim["access"])
    listed = (await client.get("/api/auth/sessions", headers=bearer(attacker["access"]))).json()
    assert sid not in {s["id"] for s in listed}


@pytest.mark.parametrize(
    "sid", ["x", "a" * 65, "bad%20chars%20here%20ok", "%00" * 20, "*", "..%2F..%2Fetc"]
)
async def test_malformed_session_ids_are_404(client, user, sid):
    pair = await login(client, user)
    response = await client.delete(f"/api/auth/sessions/{sid}", headers=bearer(pair["access"]))
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("application/json")
    assert await alive(client, pair["access"])


async def test_sessions_endpoints_need_bearer(client):
    assert (await client.get("/api/auth/sessions")).status_code == 401
    response = await client.delete("/api/auth/sessions/" + "a" * 22)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"

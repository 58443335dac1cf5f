"""Failed logins per (client IP, username): 429 with Retry-After; trusted proxies only."""

from __future__ import annotations

import httpx
from django.test import override_settings

from project.asgi import application
from tests.conftest import PASSWORD, LiveServer


async def _fail(client, username, **kw):
    return await client.post(
        "/api/auth/login", json={"username": username, "password": "wrong"}, **kw
    )


async def test_sixth_failure_is_429_with_retry_after(client, user):
    for _ in range(5):
        assert (await _fail(client, user.username)).status_code == 401
    throttled = await _fail(client, user.username)
    assert throttled.status_code == 429
    assert throttled.json()["code"] == "throttled"
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    # Even the right password is refused while throttled: nothing is let through.
    right = await client.post(
        "/api/auth/login", json={"username": user.username, "password": PASSWORD}
    )
    assert right.status_code == 429


async def test_throttle_is_per_username(client, make_user):
    victim, other = await make_user(), await make_user()
    for _ in range(6):
        await _fail(client, victim.username)
    ok = await client.post(
        "/api/auth/login", json={"username": other.username, "password": PASSWORD}
    )
    assert ok.status_code == 200


async def test_success_resets_the_count(client, user):
    for _ in range(4):
        await _fail(client, user.username)
    ok = await client.post(
        "/api/auth/login", json={"username": user.username, "password": PASSWORD}
    )
    assert ok.status_code == 200
    for _ in range(4):
        assert (await _fail(client, user.username)).status_code == 401


async def test_rate_zero_turns_throttling_off(client, user):
    with override_settings(AUTHAPI={"LOGIN_RATE": "0"}):
        for _ in range(8):
            assert (await _fail(client, user.username)).status_code == 401


async def test_forwarded_for_is_ignored_from_untrusted_peer(client, user):
    for i in range(5):
        await _fail(client, user.username, headers={"X-Forwarded-For": f"10.0.0.{i}"})
    throttled = await _fail(client, user.username, headers={"X-Forwarded-For": "10.0.0.99"})
    assert throttled.status_code == 429


async def test_forwarded_for_names_the_client_behind_a_trusted_proxy(user):
    transport = httpx.ASGITransport(app=application, client=("10.9.9.9", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as proxy:
        with override_settings(AUTHAPI={"TRUSTED_PROXIES": "10.9.9.0/24"}):
            for _ in range(5):
                await _fail(proxy, user.username, headers={"X-Forwarded-For": "203.0.113.7"})
            blocked = await _fail(proxy, user.username, headers={"X-Forwarded-For": "203.0.113.7"})
            other = await _fail(proxy, user.username, headers={"X-Forwarded-For": "203.0.113.8"})
    assert blocked.status_code == 429
    assert other.status_code == 401


async def test_bad_rate_setting_is_a_clear_error():
    from django.core.exceptions import ImproperlyConfigured

    from authapi import conf

    try:
        conf.from_mapping({"LOGIN_RATE": "lots"})
    except ImproperlyConfigured as exc:
        assert "AUTHAPI_LOGIN_RATE" in str(exc)
    else:
        raise AssertionError("a bad rate was accepted")


async def test_uvicorns_own_proxy_headers_do_not_pick_the_bucket(make_user):
    """uvicorn trusts X-Forwarded-For from 127.0.0.1 by default and rewrites the peer;
    with AUTHAPI_TRUSTED_PROXIES unset the socket peer must stay the client regardless."""
    user = await make_user()
    with LiveServer() as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            for i in range(5):
                spoofed = {"X-Forwarded-For": f"198.51.100.{i}"}
                response = await http.post(
                    "/api/auth/login",
                    json={"username": user.username, "password": "wrong"},
                    headers=spoofed,
                )
                assert response.status_code == 401
            throttled = await http.post(
                "/api/auth/login",
                json={"username": user.username, "password": "wrong"},
                headers={"X-Forwarded-For": "198.51.100.77:4242"},
            )
            assert throttled.status_code == 429
            assert int(throttled.headers["Retry-After"]) > 0
            # and a session records the real peer, not the forwarded address
            other = await make_user()
            pair = await http.post(
                "/api/auth/login",
                json={"username": other.username, "password": PASSWORD},
                headers={"X-Forwarded-For": "198.51.100.9"},
            )
            listed = await http.get(
                "/api/auth/sessions", headers={"Authorization": f"Bearer {pair.json()['access']}"}
            )
            assert listed.json()[0]["ip"] == "127.0.0.1"

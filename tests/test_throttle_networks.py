"""The throttle counts networks and accounts, not addresses: an IPv6 client owns a /64, and
one account guessed at from many networks is locked for the window (AUTHAPI_IPV6_PREFIX,
AUTHAPI_LOGIN_RATE_PER_USER, ``manage.py authapi unlock``)."""

from __future__ import annotations

import asyncio
import io
import re

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from authapi import conf, events, throttle
from project.asgi import application
from tests.conftest import PASSWORD, LiveServer, bearer

PROXY = {"AUTHAPI_TRUSTED_PROXIES": "127.0.0.1"}


def _via_proxy(server: LiveServer) -> httpx.AsyncClient:
    """A client that is the trusted proxy (127.0.0.1) of a live server."""
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.1")
    return httpx.AsyncClient(transport=transport, base_url=server.url, timeout=30)


async def _guess(http: httpx.AsyncClient, username: str, client: str, password: str = "wrong"):
    return await http.post(
        "/api/auth/login",
        json={"username": username, "password": password},
        headers={"X-Forwarded-For": client},
    )


def _asgi_client(ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=application, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


def _statuses(answers: list[httpx.Response]) -> list[int]:
    return [a.status_code for a in answers]


# --- what an address counts as ---------------------------------------------------------


@pytest.mark.parametrize(
    "address, counted",
    [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),  # IPv4-mapped: the IPv4 it maps
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("not an address", "not an address"),
    ],
)
def test_an_address_counts_as_its_network(address, counted):
    assert throttle.network(address, 64) == counted


def test_the_ipv6_prefix_is_configurable():
    assert throttle.network("2001:db8:1:2:3::1", 48) == "2001:db8:1::/48"
    assert throttle.network("2001:db8:1:2:3::1", 128) == "2001:db8:1:2:3::1/128"
    assert conf.from_mapping({}).ipv6_prefix == 64
    assert conf.from_mapping({"IPV6_PREFIX": "56"}).ipv6_prefix == 56
    for bad in ("0", "129", "sixty-four"):
        with pytest.raises(ImproperlyConfigured, match="AUTHAPI_IPV6_PREFIX"):
            conf.from_mapping({"IPV6_PREFIX": bad})


def test_the_account_rate_defaults_to_30_an_hour_and_0_is_off():
    assert conf.from_mapping({}).login_rate_per_user == (30, 3600)
    assert conf.from_mapping({"LOGIN_RATE_PER_USER": "0"}).login_rate_per_user is None
    assert conf.from_mapping({"LOGIN_RATE_PER_USER": "3/min"}).login_rate_per_user == (3, 60)
    with pytest.raises(ImproperlyConfigured, match="AUTHAPI_LOGIN_RATE_PER_USER"):
        conf.from_mapping({"LOGIN_RATE_PER_USER": "plenty"})


# --- one IPv6 /64 is one client ------------------------------------------------------------


async def test_twenty_addresses_of_one_64_behind_a_proxy_share_one_allowance(make_user):
    user, other = await make_user(), await make_user()
    with LiveServer("--no-proxy-headers", env=PROXY) as server:
        async with _via_proxy(server) as http:
            answers = await asyncio.gather(
                *(_guess(http, user.username, f"2001:db8:a:b::{i + 1:x}") for i in range(20))
            )
            assert _statuses(answers).count(401) == 5, _statuses(answers)  # AUTHAPI_LOGIN_RATE
            assert _statuses(answers).count(429) == 15
            assert all(int(a.headers["Retry-After"]) > 0 for a in answers if a.status_code == 429)
            # the right password from yet another address of that /64: still that client
            right = await _guess(http, user.username, "2001:db8:a:b:ffff::9", PASSWORD)
            assert right.status_code == 429
            # the neighbouring /64 is someone else
            elsewhere = await _guess(http, user.username, "2001:db8:a:c::1", PASSWORD)
            assert elsewhere.status_code == 200
            # and a session keeps the address it came from, not the network
            listed = await http.get(
                "/api/auth/sessions", headers=bearer(elsewhere.json()["access"])
            )
            assert [s["ip"] for s in listed.json()] == ["2001:db8:a:c::1"]
            # IPv4-mapped IPv6 is the IPv4 address: one bucket for both spellings
            for i in range(5):
                client = "198.51.100.4" if i % 2 else "::ffff:198.51.100.4"
                assert (await _guess(http, other.username, client)).status_code == 401
            mapped = await _guess(http, other.username, "::ffff:198.51.100.4", PASSWORD)
            assert mapped.status_code == 429
            assert (await _guess(http, other.username, "198.51.100.4", PASSWORD)).status_code == 429


async def test_the_per_ip_allowance_counts_the_64_too(make_user, authapi_settings):
    users = [await make_user() for _ in range(4)]
    with authapi_settings(LOGIN_RATE_PER_IP="3/min"):
        for i, u in enumerate(users[:3]):
            async with _asgi_client(f"2001:db8:5:6::{i + 1}") as http:
                assert (await _guess(http, u.username, "")).status_code == 401
        async with _asgi_client("2001:db8:5:6:7:8:9:a") as http:  # stuffing, new address
            assert (await _guess(http, users[3].username, "", PASSWORD)).status_code == 429
        async with _asgi_client("2001:db8:5:7::1") as http:
            assert (await _guess(http, users[3].username, "", PASSWORD)).status_code == 200


# --- one account guessed at from many networks ---------------------------------------------


def _networks(count: int) -> list[str]:
    """``count`` clients on distinct networks: IPv4 addresses and IPv6 /64s, alternately."""
    return [
        f"203.0.113.{i // 2 + 1}" if i % 2 else f"2001:db8:{i:x}:{i:x}::1" for i in range(count)
    ]


async def _unlock(username: str) -> str:
    out = io.StringIO()
    await sync_to_async(call_command)("authapi", "unlock", username, stdout=out)
    return out.getvalue()


async def test_an_account_guessed_from_60_networks_is_locked_after_its_allowance(
    make_user, authapi_settings
):
    user = await make_user()
    env = {**PROXY, "AUTHAPI_LOGIN_RATE_PER_USER": "10/hour"}
    with LiveServer("--no-proxy-headers", env=env) as server:
        async with _via_proxy(server) as http:
            # a session opened before the attack
            pair = (await _guess(http, user.username, "192.0.2.200", PASSWORD)).json()
            nets = _networks(60)
            answers = await asyncio.gather(*(_guess(http, user.username, n) for n in nets))
            statuses = _statuses(answers)
            assert statuses.count(401) == 10 and statuses.count(429) == 50, statuses
            late = [a for a in answers if a.status_code == 429]
            assert all(a.json()["code"] == "throttled" for a in late)
            assert all(3000 < int(a.headers["Retry-After"]) <= 3600 for a in late)
            # the owner's right password, from a network never seen: refused (the trade-off)
            owner = await _guess(http, user.username, "192.0.2.201", PASSWORD)
            assert owner.status_code == 429 and int(owner.headers["Retry-After"]) > 0
            # ... but the live session goes on: access checks and refreshes
            refresh = pair["refresh"]
            for _ in range(3):
                turned = await http.post("/api/auth/refresh", json={"refresh": refresh})
                assert turned.status_code == 200, turned.text
                refresh = turned.json()["refresh"]
                me = await http.get("/api/auth/me", headers=bearer(turned.json()["access"]))
                assert me.status_code == 200 and me.json()["username"] == user.username
            # other accounts are not locked
            other = await sync_to_async(type(user).objects.create_user)(
                username=f"{user.username}-other", password=PASSWORD
            )
            assert (await _guess(http, other.username, "192.0.2.202", PASSWORD)).status_code == 200
            # an operator (with the server's settings) lifts the lock, whatever the case
            with authapi_settings(LOGIN_RATE_PER_USER="10/hour"):
                assert "Unlocked" in await _unlock(user.username.upper())
                owner = await _guess(http, user.username, "192.0.2.201", PASSWORD)
                assert owner.status_code == 200
                assert "was not locked" in await _unlock(user.username)


async def test_a_success_gives_the_account_its_attempt_back(make_user, authapi_settings):
    user = await make_user()
    with authapi_settings(LOGIN_RATE_PER_USER="3/hour"):
        for i in range(2):
            async with _asgi_client(f"192.0.2.{30 + i}") as http:
                assert (await _guess(http, user.username, "")).status_code == 401
        for i in range(4):  # successes never use the account's allowance up
            async with _asgi_client(f"192.0.2.{40 + i}") as http:
                assert (await _guess(http, user.username, "", PASSWORD)).status_code == 200
        seen: list[dict] = []

        def note(sender, **fields):
            seen.append(fields)

        events.login_throttled.connect(note)
        try:
            async with _asgi_client("192.0.2.50") as http:
                assert (await _guess(http, user.username, "")).status_code == 401
                assert (await _guess(http, user.username, "", PASSWORD)).status_code == 429
        finally:
            events.login_throttled.disconnect(note)
        assert [(e["limit"], e["ip"]) for e in seen] == [("account", "192.0.2.50")]


async def test_the_account_allowance_zero_is_off(make_user, authapi_settings):
    user = await make_user()
    with authapi_settings(LOGIN_RATE_PER_USER="0"):
        for i in range(8):
            async with _asgi_client(f"192.0.2.{60 + i}") as http:
                assert (await _guess(http, user.username, "")).status_code == 401


async def test_the_admin_login_shares_the_account_allowance(make_user, authapi_settings):
    staff = await make_user(is_staff=True, is_superuser=True)
    with authapi_settings(LOGIN_RATE_PER_USER="2/hour"):
        for i in range(2):
            async with _asgi_client(f"192.0.2.{80 + i}") as http:
                assert (await _guess(http, staff.username, "")).status_code == 401
        assert not await _admin_login("192.0.2.90", staff.username, PASSWORD)
        await _unlock(staff.username)
        assert await _admin_login("192.0.2.90", staff.username, PASSWORD)


async def _admin_login(ip: str, username: str, password: str) -> bool:
    async with _asgi_client(ip) as admin:
        page = await admin.get("/admin/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token is not None
        form = {"username": username, "password": password, "next": "/admin/"}
        done = await admin.post("/admin/login/", data={**form, "csrfmiddlewaretoken": token[1]})
        return done.status_code == 302 and "sessionid" in admin.cookies

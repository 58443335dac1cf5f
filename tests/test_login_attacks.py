"""Attacks on the login: concurrent guessing, stuffing from one address, every door that
checks a password, spoofed client addresses, and a login racing a password change."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from authapi import conf
from project.asgi import application
from tests import hashers
from tests.conftest import PASSWORD, LiveServer, bearer

WRONG = {"password": "wrong"}


def _asgi_client(ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=application, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


async def _try(http: httpx.AsyncClient, username: str, password: str = "wrong") -> httpx.Response:
    return await http.post("/api/auth/login", json={"username": username, "password": password})


# --- attempts are reserved before the password is checked -------------------------------


async def test_100_concurrent_wrong_passwords_get_at_most_the_allowance(user):
    async with _asgi_client("192.0.2.10") as http:
        answers = await asyncio.gather(*(_try(http, user.username) for _ in range(100)))
    statuses = [a.status_code for a in answers]
    assert statuses.count(401) <= 5, statuses.count(401)
    assert statuses.count(401) + statuses.count(429) == 100, set(statuses)
    assert all(a.json()["code"] in {"no_active_account", "throttled"} for a in answers)


async def test_throttled_attempts_are_not_counted_and_success_gives_its_attempt_back(
    make_user, authapi_settings
):
    users = [await make_user() for _ in range(4)]
    with authapi_settings(LOGIN_RATE_PER_IP="3/min"):
        async with _asgi_client("192.0.2.11") as http:
            for _ in range(5):  # successes from one address never use up its allowance
                assert (await _try(http, users[0].username, PASSWORD)).status_code == 200
            for u in users[:3]:
                assert (await _try(http, u.username)).status_code == 401
            # stuffing: a fourth username from the same address is refused, right password too
            stuffed = await _try(http, users[3].username, PASSWORD)
            assert stuffed.status_code == 429 and int(stuffed.headers["Retry-After"]) > 0
        async with _asgi_client("192.0.2.12") as elsewhere:  # other addresses are not hit
            assert (await _try(elsewhere, users[3].username, PASSWORD)).status_code == 200


async def test_per_ip_limit_zero_is_off(make_user, authapi_settings):
    users = [await make_user() for _ in range(4)]
    with authapi_settings(LOGIN_RATE_PER_IP="0", LOGIN_RATE="1/min"):
        assert conf.get().login_rate_per_ip is None
        async with _asgi_client("192.0.2.13") as http:
            for u in users:
                assert (await _try(http, u.username)).status_code == 401


def test_bad_per_ip_rate_is_a_clear_error():
    with pytest.raises(ImproperlyConfigured, match="AUTHAPI_LOGIN_RATE_PER_IP"):
        conf.from_mapping({"LOGIN_RATE_PER_IP": "many"})


async def test_default_per_ip_rate_is_60_a_minute():
    assert conf.from_mapping({}).login_rate_per_ip == (60, 60)


# --- every door that checks a password shares the allowance -----------------------------


def _csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert found is not None, page.text[:500]
    return found[1]


async def _admin_login(ip: str, username: str, password: str) -> bool:
    async with _asgi_client(ip) as admin:
        page = await admin.get("/admin/login/")
        form = {"username": username, "password": password, "next": "/admin/"}
        done = await admin.post(
            "/admin/login/", data={**form, "csrfmiddlewaretoken": _csrf_of(page)}
        )
        assert done.status_code in (200, 302), done.status_code
        return done.status_code == 302 and "sessionid" in admin.cookies


async def test_admin_login_shares_the_api_allowance(make_user):
    staff = await make_user(is_staff=True, is_superuser=True)
    async with _asgi_client("192.0.2.20") as http:
        for _ in range(5):
            assert (await _try(http, staff.username)).status_code == 401
    # the API's allowance is used up: the admin refuses even the right password
    assert not await _admin_login("192.0.2.20", staff.username, PASSWORD)
    assert await _admin_login("192.0.2.21", staff.username, PASSWORD)


async def test_wrong_admin_passwords_throttle_the_api_too(make_user):
    staff = await make_user(is_staff=True, is_superuser=True)
    for _ in range(5):
        assert not await _admin_login("192.0.2.22", staff.username, "wrong")
    async with _asgi_client("192.0.2.22") as http:
        assert (await _try(http, staff.username, PASSWORD)).status_code == 429
        # the simplejwt alias is the same door
        alias = await http.post("/api/token/", json={"username": staff.username, **WRONG})
        assert alias.status_code == 429


async def test_django_authenticate_is_throttled_for_any_door(user):
    """A door added later (here: a bare authenticate() call with a request) inherits it."""
    from django.contrib.auth import aauthenticate
    from django.test import RequestFactory

    request = RequestFactory().post("/somewhere", REMOTE_ADDR="192.0.2.23")
    for _ in range(5):
        assert await aauthenticate(request, username=user.username, password="wrong") is None
    assert await aauthenticate(request, username=user.username, password=PASSWORD) is None
    other = RequestFactory().post("/somewhere", REMOTE_ADDR="192.0.2.24")
    assert await aauthenticate(other, username=user.username, password=PASSWORD) is not None


async def test_a_project_without_the_throttled_backend_is_warned():
    from authapi import checks

    with override_settings(AUTHENTICATION_BACKENDS=["django.contrib.auth.backends.ModelBackend"]):
        found = checks.backend_check()
    assert [m.id for m in found] == ["authapi.W002"]
    assert checks.backend_check() == []


# --- the client address is the socket peer -------------------------------------------------


async def _session_ip(http: httpx.AsyncClient, username: str, **headers: str) -> str:
    response = await http.post(
        "/api/auth/login", json={"username": username, "password": PASSWORD}, headers=headers
    )
    assert response.status_code == 200, response.text
    listed = await http.get("/api/auth/sessions", headers=bearer(response.json()["access"]))
    return str(listed.json()[0]["ip"])


def _from(ip: str, server: LiveServer) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=ip)
    return httpx.AsyncClient(transport=transport, base_url=server.url)


@pytest.mark.parametrize(
    "launch",
    [(), ("--no-proxy-headers",), ("--forwarded-allow-ips", "*")],
    ids=["plain-uvicorn-line", "documented-flags", "uvicorn-trusts-everyone"],
)
async def test_forwarded_for_cannot_choose_the_client_address(make_user, launch):
    users = [await make_user() for _ in range(4)]
    with LiveServer(*launch) as server:
        async with _from("127.0.0.2", server) as other, _from("127.0.0.1", server) as local:
            # a direct client on 127.0.0.2 naming itself, or someone else, is still itself
            assert (
                await _session_ip(other, users[0].username, **{"X-Forwarded-For": "127.0.0.2"})
                == "127.0.0.2"
            )
            assert (
                await _session_ip(other, users[1].username, **{"X-Forwarded-For": "203.0.113.9"})
                == "127.0.0.2"
            )
            assert (
                await _session_ip(local, users[2].username, **{"X-Forwarded-For": "203.0.113.9:80"})
                == "127.0.0.1"
            )
            # 127.0.0.2 claiming to be 127.0.0.1 uses up its own bucket, not 127.0.0.1's
            spoof = {"X-Forwarded-For": "127.0.0.1"}
            for _ in range(6):
                await other.post(
                    "/api/auth/login", json={"username": users[3].username, **WRONG}, headers=spoof
                )
            blocked = await other.post(
                "/api/auth/login", json={"username": users[3].username, "password": PASSWORD}
            )
            assert blocked.status_code == 429
            assert await _session_ip(local, users[3].username) == "127.0.0.1"


async def test_a_trusted_proxy_names_the_client_and_nobody_else_does(make_user):
    users = [await make_user() for _ in range(2)]
    with LiveServer("--no-proxy-headers", env={"AUTHAPI_TRUSTED_PROXIES": "127.0.0.1"}) as server:
        async with _from("127.0.0.1", server) as proxy, _from("127.0.0.2", server) as direct:
            forwarded = {"X-Forwarded-For": "203.0.113.50, 127.0.0.1"}
            assert await _session_ip(proxy, users[0].username, **forwarded) == "203.0.113.50"
            assert await _session_ip(direct, users[1].username, **forwarded) == "127.0.0.2"


def test_startup_warns_when_uvicorn_rewrites_addresses(tmp_path):
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT
    from tests.redis_server import free_port

    logs = {}
    for name, flags in (("on", []), ("off", ["--no-proxy-headers"])):
        port = free_port()
        log = tmp_path / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "project.asgi:application",
                 "--host", "127.0.0.1", "--port", str(port), *flags],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                deadline = time.monotonic() + 30
                while b"Uvicorn running" not in log.read_bytes() and time.monotonic() < deadline:
                    time.sleep(0.1)
            finally:
                process.terminate()
                process.wait(timeout=15)
        logs[name] = log.read_text()
    assert "--no-proxy-headers" in logs["on"]
    assert "--no-proxy-headers" not in logs["off"]


# --- a login racing a password change leaves nothing alive ---------------------------------


async def _claims_only_alive(client: httpx.AsyncClient, access: str) -> bool:
    """The access check alone (no user query), as a route of the user's own NinjaAPI."""
    response = await client.get("/demo/async", headers=bearer(access))
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


GATED = ["tests.hashers.GateHasher", "django.contrib.auth.hashers.MD5PasswordHasher"]


def _change(user, **fields):
    fresh = get_user_model().objects.get(pk=user.pk)
    if "password" in fields:
        fresh.set_password(fields.pop("password"))
    for name, value in fields.items():
        setattr(fresh, name, value)
    fresh.save()


@pytest.mark.parametrize(
    "change",
    [{"password": "a brand new one"}, {"is_active": False}],
    ids=["password", "deactivate"],
)
async def test_a_login_whose_check_passed_before_the_change_gets_nothing_alive(
    client, make_user, change
):
    with override_settings(PASSWORD_HASHERS=GATED):
        user = await make_user()
        hashers.GateHasher.entered.clear()
        hashers.GateHasher.gate.clear()
        racing = asyncio.ensure_future(_try(client, user.username, PASSWORD))
        try:
            assert await asyncio.to_thread(hashers.GateHasher.entered.wait, 10)
            # the old password has been read and is being checked: change the account now
            await sync_to_async(_change)(user, **change)
        finally:
            hashers.GateHasher.gate.set()
        response = await racing
    if response.status_code == 200:  # if a pair came out, none of it may work
        pair = response.json()
        assert not await _claims_only_alive(client, pair["access"])
        again = await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
        assert again.status_code == 401
    else:
        assert response.status_code == 401 and response.json()["code"] == "no_active_account"


async def test_many_logins_racing_a_password_change(client, make_user, authapi_settings):
    """Unforced: 20 logins in flight while the password changes; afterwards none works."""
    user = await make_user()
    with authapi_settings(LOGIN_RATE="100/min"):
        logins = [asyncio.ensure_future(_try(client, user.username, PASSWORD)) for _ in range(20)]
        await asyncio.sleep(0)
        await sync_to_async(_change)(user, password="changed under them")
        answers = await asyncio.gather(*logins)
    for response in answers:
        assert response.status_code in (200, 401)
        if response.status_code == 200:
            assert not await _claims_only_alive(client, response.json()["access"])

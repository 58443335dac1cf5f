"""AUTHAPI_COOKIES=1: httpOnly token cookies with CSRF double-submit, as a browser uses them."""

from __future__ import annotations

from http.cookies import SimpleCookie

import httpx
import pytest

from tests.conftest import PASSWORD, bearer, login


def _set_cookies(response: httpx.Response) -> dict[str, SimpleCookie]:
    jar: dict[str, SimpleCookie] = {}
    for header in response.headers.get_list("set-cookie"):
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(header)
        for name in cookie:
            jar[name] = cookie
    return jar


@pytest.fixture
def cookie_mode(authapi_settings):
    with authapi_settings(COOKIES="1"):
        yield


@pytest.fixture
async def browser(cookie_mode):
    """A client of its own, with a cookie jar, speaking to the app as a browser would."""
    from project.asgi import application

    transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 50001))
    async with httpx.AsyncClient(transport=transport, base_url="https://127.0.0.1") as c:
        yield c


async def _browser_login(browser, user) -> dict:
    response = await browser.post(
        "/api/auth/login", json={"username": user.username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return response.json()


CROSS_SITE = {"Sec-Fetch-Site": "cross-site"}


def _csrf(browser) -> dict[str, str]:
    return {"X-CSRF-Token": browser.cookies["authapi_csrf"]}


async def test_login_sets_the_three_cookies_with_safe_attributes(browser, user):
    response = await browser.post(
        "/api/auth/login", json={"username": user.username, "password": PASSWORD}
    )
    pair = response.json()
    jar = _set_cookies(response)
    access = jar["authapi_access"]["authapi_access"]
    refresh = jar["authapi_refresh"]["authapi_refresh"]
    csrf = jar["authapi_csrf"]["authapi_csrf"]
    assert access.value == pair["access"] and refresh.value.count(".") == 2
    assert access["httponly"] and refresh["httponly"] and not csrf["httponly"]
    assert access["secure"] and refresh["secure"] and csrf["secure"]
    assert access["samesite"] == "Lax" and refresh["samesite"] == "Strict"
    assert refresh["path"] == "/api/" and access["path"] == "/"
    assert int(access["max-age"]) == pair["expires_in"]
    assert int(refresh["max-age"]) == pair["refresh_expires_in"]
    assert len(csrf.value) >= 32


async def test_get_with_the_access_cookie_needs_no_csrf(browser, user):
    await _browser_login(browser, user)
    response = await browser.get("/api/auth/me")
    assert response.status_code == 200
    assert response.json()["username"] == user.username
    assert (await browser.get("/demo/sync")).status_code == 200


async def test_unsafe_request_with_a_cookie_needs_the_csrf_header(browser, user):
    await _browser_login(browser, user)
    refused = await browser.post("/api/auth/logout-all")
    assert refused.status_code == 403
    assert refused.json()["code"] == "csrf_failed"
    wrong = await browser.post("/api/auth/logout-all", headers={"X-CSRF-Token": "guess"})
    assert wrong.status_code == 403
    assert (await browser.get("/api/auth/me")).status_code == 200  # nothing was revoked
    ok = await browser.post("/api/auth/logout-all", headers=_csrf(browser))
    assert ok.status_code == 204


async def test_refresh_from_the_cookie_rotates_the_cookies(browser, user):
    await _browser_login(browser, user)
    first, csrf = browser.cookies["authapi_refresh"], _csrf(browser)
    without = await browser.post("/api/auth/refresh")
    assert without.status_code == 403 and without.json()["code"] == "csrf_failed"
    response = await browser.post("/api/auth/refresh", headers=csrf)
    assert response.status_code == 200, response.text
    assert "refresh" not in response.json()
    assert browser.cookies["authapi_refresh"] != first
    assert browser.cookies["authapi_access"] == response.json()["access"]
    assert browser.cookies["authapi_csrf"] != csrf["X-CSRF-Token"]  # a new value each time
    assert (await browser.get("/api/auth/me")).status_code == 200


async def test_refresh_with_a_body_ignores_the_cookie(browser, user, client):
    await _browser_login(browser, user)
    other = await login(client, user, headers=CROSS_SITE)  # cookies set nothing: body pair
    response = await browser.post("/api/auth/refresh", json={"refresh": other["refresh"]})
    assert response.status_code == 200  # a body is not cookie auth: no CSRF needed


async def test_logout_from_the_cookies_clears_them_and_revokes(browser, user):
    pair = await _browser_login(browser, user)
    response = await browser.post("/api/auth/logout", headers=_csrf(browser))
    assert response.status_code == 204
    for name in ("authapi_access", "authapi_refresh", "authapi_csrf"):
        cookie = _set_cookies(response)[name][name]
        assert cookie.value == "" and cookie["max-age"] == "0"
    assert "authapi_access" not in browser.cookies
    verified = await browser.post("/api/auth/verify", json={"token": pair["access"]})
    assert verified.status_code == 401


async def test_bearer_header_wins_over_the_cookie_and_needs_no_csrf(browser, user, make_user):
    await _browser_login(browser, user)
    other = await make_user()
    pair = await _browser_login(browser, other)  # the jar now holds other's cookies
    me = await browser.get("/api/auth/me", headers=bearer(pair["access"]))
    assert me.json()["username"] == other.username
    out = await browser.post("/api/auth/logout-all", headers=bearer(pair["access"]))
    assert out.status_code == 204


async def test_cookies_are_off_by_default(client, user):
    response = await client.post(
        "/api/auth/login", json={"username": user.username, "password": PASSWORD}
    )
    assert "set-cookie" not in response.headers
    pair = response.json()
    assert pair["refresh"]  # the body carries the whole pair
    # and a cookie alone authenticates nothing
    me = await client.get("/api/auth/me", headers={"Cookie": f"authapi_access={pair['access']}"})
    assert me.status_code == 401


@pytest.mark.parametrize(
    ("base_url", "secure"),
    [("http://127.0.0.1", False), ("http://localhost", False), ("https://127.0.0.1", True),
     ("http://testserver", True)],
)  # fmt: skip
async def test_secure_by_default_except_plain_http_on_loopback(
    authapi_settings, user, base_url, secure
):
    from project.asgi import application

    transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 50005))
    with authapi_settings(COOKIES="1"):
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as c:
            response = await c.post(
                "/api/auth/login", json={"username": user.username, "password": PASSWORD}
            )
            access = _set_cookies(response)["authapi_access"]["authapi_access"]
            assert bool(access["secure"]) is secure
            if not secure:  # a plain-http client keeps and sends them back
                assert (await c.get("/api/auth/me")).status_code == 200
                csrf = {"X-CSRFToken": c.cookies["authapi_csrf"]}  # Django's header name
                assert (await c.post("/api/auth/logout-all", headers=csrf)).status_code == 204


@pytest.mark.parametrize(
    ("setting", "base_url", "secure"),
    [("1", "http://127.0.0.1", True), ("0", "https://127.0.0.1", False)],
    ids=["forced-on", "forced-off"],
)
async def test_cookie_secure_setting_wins(authapi_settings, user, setting, base_url, secure):
    from project.asgi import application

    transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 50006))
    with authapi_settings(COOKIES="1", COOKIE_SECURE=setting):
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as c:
            response = await c.post(
                "/api/auth/login", json={"username": user.username, "password": PASSWORD}
            )
    access = _set_cookies(response)["authapi_access"]["authapi_access"]
    assert bool(access["secure"]) is secure and access["httponly"]


def test_bad_cookie_setting_is_an_error(authapi_settings):
    from django.core.exceptions import ImproperlyConfigured

    from authapi import startup

    with authapi_settings(COOKIES="maybe"), pytest.raises(ImproperlyConfigured, match="COOKIES"):
        startup.validate()


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
    ],
    ids=["cross-site", "same-site", "foreign-origin", "null-origin"],
)
async def test_cross_site_login_sets_no_cookies(browser, user, headers):
    """Login CSRF: a foreign page's form must not log the browser into another account."""
    response = await browser.post(
        "/api/auth/login", data={"username": user.username, "password": PASSWORD}, headers=headers
    )
    assert response.status_code == 200 and response.json()["access"]
    assert response.json()["refresh"]  # no cookie to carry it: the body does
    assert "set-cookie" not in response.headers


async def test_same_origin_login_sets_cookies(browser, user):
    headers = {"Sec-Fetch-Site": "same-origin", "Origin": "https://127.0.0.1"}
    response = await browser.post(
        "/api/auth/login", json={"username": user.username, "password": PASSWORD}, headers=headers
    )
    assert "authapi_access" in _set_cookies(response)


async def test_logout_with_a_body_token_needs_no_csrf_even_with_cookies(browser, user):
    pair = await _browser_login(browser, user)
    refresh = browser.cookies["authapi_refresh"]
    response = await browser.post("/api/auth/logout", json={"refresh": refresh})
    assert response.status_code == 204
    verified = await browser.post("/api/auth/verify", json={"token": pair["access"]})
    assert verified.status_code == 401


@pytest.mark.parametrize("path", ["/api/auth/login", "/api/token/"])
async def test_a_login_that_sets_the_refresh_cookie_keeps_it_out_of_the_body(browser, user, path):
    response = await browser.post(path, json={"username": user.username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    assert "authapi_refresh" in _set_cookies(response)
    body = response.json()
    assert "refresh" not in body
    assert set(body) == {"access", "token_type", "expires_in", "refresh_expires_in"}
    assert body["access"] == browser.cookies["authapi_access"]
    assert browser.cookies["authapi_refresh"] not in response.text


@pytest.mark.parametrize("path", ["/api/auth/refresh", "/api/token/refresh/"])
async def test_the_refresh_cookie_alone_refreshes_and_stays_out_of_the_body(browser, user, path):
    await _browser_login(browser, user)
    spent = browser.cookies["authapi_refresh"]
    response = await browser.post(path, headers=_csrf(browser))
    assert response.status_code == 200, response.text
    assert "refresh" not in response.json()
    fresh = browser.cookies["authapi_refresh"]
    assert fresh != spent and fresh not in response.text
    again = await browser.post("/api/auth/refresh", headers=_csrf(browser))
    assert again.status_code == 200, again.text  # the new cookie is the live one


async def test_a_body_refresh_that_sets_cookies_also_keeps_refresh_out_of_the_body(
    browser, user, client
):
    other = await login(client, user, headers=CROSS_SITE)
    response = await browser.post("/api/auth/refresh", json={"refresh": other["refresh"]})
    assert response.status_code == 200, response.text
    assert "refresh" not in response.json()
    assert browser.cookies["authapi_refresh"] not in response.text


async def test_cross_origin_login_in_cookie_mode_keeps_refresh_in_the_body(browser, user):
    response = await browser.post(
        "/api/auth/login",
        json={"username": user.username, "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 200
    assert "set-cookie" not in response.headers
    pair = response.json()
    assert pair["refresh"]
    refreshed = await browser.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
    assert refreshed.status_code == 200, refreshed.text


async def test_an_origin_cors_allows_gets_cookies_and_a_foreign_one_does_not(
    client, user, authapi_settings
):
    from django.test import override_settings

    body = {"username": user.username, "password": PASSWORD}
    app = "http://127.0.0.1:5173"
    with authapi_settings(COOKIES="1"), override_settings(CORS_ALLOWED_ORIGINS=[app]):
        allowed = await client.post(
            "/api/auth/login", json=body, headers={"Origin": app, "Sec-Fetch-Site": "same-site"}
        )
        assert allowed.status_code == 200 and "refresh" not in allowed.json()
        assert "authapi_refresh" in allowed.headers.get("set-cookie", "")
        assert allowed.headers["Access-Control-Allow-Origin"] == app
        assert allowed.headers["Access-Control-Allow-Credentials"] == "true"
        foreign = await client.post(
            "/api/auth/login",
            json=body,
            headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
        )
        assert foreign.status_code == 200 and "refresh" in foreign.json()
        assert "authapi_refresh" not in foreign.headers.get("set-cookie", "")
        assert "Access-Control-Allow-Origin" not in foreign.headers

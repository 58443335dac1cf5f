"""The admin stays same-origin when a single-page app is allowed (DJANGO_CORS_ALLOWED_ORIGINS):
no CORS headers on its pages, and its forms refuse a POST that carries the app's Origin,
over a live server. The API keeps answering the app (tests/test_cors.py)."""

from __future__ import annotations

import re

import httpx

from tests.conftest import PASSWORD, LiveServer, login

APP = "http://127.0.0.1:5173"
_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def _csrf(page: httpx.Response) -> str:
    found = _CSRF.search(page.text)
    assert found is not None, page.text[:500]
    return found[1]


async def _login_form(http: httpx.AsyncClient, username: str, **headers: str) -> httpx.Response:
    page = await http.get("/admin/login/")
    form = {"username": username, "password": PASSWORD, "next": "/admin/"}
    return await http.post(
        "/admin/login/", data={**form, "csrfmiddlewaretoken": _csrf(page)}, headers=headers
    )


async def test_the_apps_origin_can_neither_read_nor_drive_the_admin(make_user):
    staff = await make_user(is_staff=True, is_superuser=True)
    victim = await make_user()
    with LiveServer("--no-proxy-headers", env={"DJANGO_CORS_ALLOWED_ORIGINS": APP}) as server:
        async with httpx.AsyncClient(base_url=server.url) as app_page:
            # the app's own origin posting the admin's login form: valid cookie and token
            refused = await _login_form(app_page, staff.username, Origin=APP)
            assert refused.status_code == 403
            assert "sessionid" not in app_page.cookies

        async with httpx.AsyncClient(base_url=server.url) as admin:
            assert (await _login_form(admin, staff.username)).status_code == 302
            listing = await admin.get("/admin/auth/user/", headers={"Origin": APP})
            assert listing.status_code == 200 and "csrfmiddlewaretoken" in listing.text
            assert "Access-Control-Allow-Origin" not in listing.headers
            assert "Access-Control-Allow-Credentials" not in listing.headers
            preflight = await admin.options(
                "/admin/auth/user/",
                headers={"Origin": APP, "Access-Control-Request-Method": "POST"},
            )
            assert "Access-Control-Allow-Origin" not in preflight.headers

            # a revoke from the app's origin, with the admin's cookies and a valid token
            pair = await login(admin, victim)
            revoke = f"/admin/auth/user/{victim.pk}/sessions/revoke-all/"
            token = _csrf(await admin.get(f"/admin/auth/user/{victim.pk}/change/"))
            forged = await admin.post(
                revoke, data={"csrfmiddlewaretoken": token}, headers={"Origin": APP}
            )
            assert forged.status_code == 403
            still = await admin.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
            assert still.status_code == 200  # nothing was revoked
            # the same POST from the admin's own origin goes through
            own = await admin.post(
                revoke, data={"csrfmiddlewaretoken": token}, headers={"Origin": server.url}
            )
            assert own.status_code == 302

            # the API's paths still answer the app
            api = await admin.options(
                "/api/auth/login",
                headers={"Origin": APP, "Access-Control-Request-Method": "POST"},
            )
            assert api.headers["Access-Control-Allow-Origin"] == APP

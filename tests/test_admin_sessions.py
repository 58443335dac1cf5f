"""The users' admin pages, over HTTP: a user's live sessions, ending one or all of them, the
"Log out everywhere" action, and who may do it."""

from __future__ import annotations

import re
from contextlib import asynccontextmanager

import httpx
import jwt
from asgiref.sync import sync_to_async
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from authapi import events
from authapi.admin import SessionsAdminMixin, register
from project.asgi import application
from tests.conftest import PASSWORD, bearer, login

_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def _sid(token: str) -> str:
    return jwt.decode(token, options={"verify_signature": False})["sid"]


def _csrf(page: httpx.Response) -> str:
    found = _CSRF.search(page.text)
    assert found is not None, page.text[:500]
    return found[1]


@asynccontextmanager
async def _browser(user=None):
    """An admin session: a cookie jar logged in as ``user`` through the login form."""
    transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 50010))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as browser:
        if user is not None:
            page = await browser.get("/admin/login/")
            form = {"username": user.username, "password": PASSWORD, "next": "/admin/"}
            await browser.post("/admin/login/", data={**form, "csrfmiddlewaretoken": _csrf(page)})
        yield browser


async def _api_login(user, ip: str, agent: str) -> dict:
    transport = httpx.ASGITransport(app=application, client=(ip, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as device:
        return await login(device, user, headers={"User-Agent": agent})


async def _works(client, access: str) -> bool:
    response = await client.get("/demo/async", headers=bearer(access))
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


def _change_url(user) -> str:
    return f"/admin/auth/user/{user.pk}/change/"


def _recorded():
    seen: list[tuple[str, dict]] = []

    def session(sender, **fields):
        seen.append(("session_revoked", fields))

    def user(sender, **fields):
        seen.append(("user_sessions_revoked", fields))

    events.session_revoked.connect(session)
    events.user_sessions_revoked.connect(user)

    def stop():
        events.session_revoked.disconnect(session)
        events.user_sessions_revoked.disconnect(user)

    return seen, stop


async def _viewer(make_user):
    """Staff that may view users but not change them."""
    staff = await make_user(is_staff=True)

    def grant():
        staff.user_permissions.add(Permission.objects.get(codename="view_user"))

    await sync_to_async(grant)()
    return staff


def test_the_user_admin_is_extended_in_place():
    model_admin = admin.site.get_model_admin(get_user_model())
    assert isinstance(model_admin, SessionsAdminMixin)
    from django.contrib.auth.admin import UserAdmin

    assert isinstance(model_admin, UserAdmin)
    register()  # a second time changes nothing
    assert type(admin.site.get_model_admin(get_user_model())) is type(model_admin)


def test_nothing_happens_without_a_user_admin():
    site = admin.AdminSite(name="bare")
    register(site)
    assert not site.is_registered(get_user_model())


async def test_the_change_page_lists_live_sessions(client, make_user):
    staff = await make_user(is_staff=True, is_superuser=True)
    target = await make_user()
    phone = await _api_login(target, "10.20.30.40", "PhoneApp/2.1 (<b>bold</b>)")
    laptop = await _api_login(target, "192.0.2.7", "LaptopBrowser/99")
    async with _browser(staff) as browser:
        page = await browser.get(_change_url(target))
    assert page.status_code == 200
    assert "Live sessions" in page.text
    for pair, ip in ((phone, "10.20.30.40"), (laptop, "192.0.2.7")):
        assert f'id="authapi-session-{_sid(pair["access"])}"' in page.text
        assert ip in page.text
    assert "LaptopBrowser/99" in page.text
    assert "PhoneApp/2.1 (&lt;b&gt;bold&lt;/b&gt;)" in page.text  # escaped, never markup
    for token in (phone["access"], phone["refresh"], laptop["access"], laptop["refresh"]):
        assert token not in page.text


async def test_revoke_one_then_log_out_everywhere(client, make_user):
    staff = await make_user(is_staff=True, is_superuser=True)
    target = await make_user()
    pairs = [await _api_login(target, "127.0.0.1", f"device-{n}") for n in range(3)]
    first = _sid(pairs[0]["access"])
    seen, stop = _recorded()
    try:
        async with _browser(staff) as browser:
            page = await browser.get(_change_url(target))
            token = _csrf(page)
            url = f"/admin/auth/user/{target.pk}/sessions/{first}/revoke/"
            done = await browser.post(url, data={"csrfmiddlewaretoken": token})
            assert done.status_code == 302 and done.headers["location"] == _change_url(target)
            assert not await _works(client, pairs[0]["access"])
            assert await _works(client, pairs[1]["access"])
            assert await _works(client, pairs[2]["access"])
            page = await browser.get(_change_url(target))
            assert "The session was ended." in page.text
            assert f"authapi-session-{first}" not in page.text
            # again: already gone, said so, nothing sent
            again = await browser.post(url, data={"csrfmiddlewaretoken": _csrf(page)})
            assert again.status_code == 302
            url = f"/admin/auth/user/{target.pk}/sessions/revoke-all/"
            done = await browser.post(url, data={"csrfmiddlewaretoken": _csrf(page)})
            assert done.status_code == 302
            page = await browser.get(_change_url(target))
            assert "2 session(s) ended" in page.text and "No live sessions." in page.text
    finally:
        stop()
    assert not any([await _works(client, pair["access"]) for pair in pairs])
    refreshed = await client.post("/api/auth/refresh", json={"refresh": pairs[1]["refresh"]})
    assert refreshed.status_code == 401
    assert [(name, f["reason"], f["user_id"]) for name, f in seen] == [
        ("session_revoked", "admin", target.pk),
        ("user_sessions_revoked", "admin", target.pk),
    ]
    assert seen[0][1]["session_id"] == first and seen[0][1]["by"] == staff.pk
    assert seen[1][1]["sessions"] == 2 and seen[1][1]["by"] == staff.pk


async def test_the_buttons_need_post_and_csrf(client, make_user):
    staff = await make_user(is_staff=True, is_superuser=True)
    target = await make_user()
    pair = await _api_login(target, "127.0.0.1", "x")
    url = f"/admin/auth/user/{target.pk}/sessions/{_sid(pair['access'])}/revoke/"
    async with _browser(staff) as browser:
        assert (await browser.get(url)).status_code == 405
        assert (await browser.post(url, data={})).status_code == 403  # no CSRF token
        revoke_all = f"/admin/auth/user/{target.pk}/sessions/revoke-all/"
        assert (await browser.post(revoke_all, data={})).status_code == 403
        missing = await browser.post(
            "/admin/auth/user/999999999/sessions/revoke-all/",
            data={"csrfmiddlewaretoken": _csrf(await browser.get(_change_url(target)))},
        )
        assert missing.status_code == 404
    assert await _works(client, pair["access"])


async def test_the_bulk_action_logs_users_out_everywhere(client, make_user):
    staff = await make_user(is_staff=True, is_superuser=True)
    one, two, bystander = await make_user(), await make_user(), await make_user()
    pairs = [await _api_login(user, "127.0.0.1", "x") for user in (one, one, two)]
    kept = await _api_login(bystander, "127.0.0.1", "x")
    seen, stop = _recorded()
    try:
        async with _browser(staff) as browser:
            page = await browser.get("/admin/auth/user/")
            assert 'value="log_out_everywhere"' in page.text
            done = await browser.post(
                "/admin/auth/user/",
                data={
                    "csrfmiddlewaretoken": _csrf(page),
                    "action": "log_out_everywhere",
                    "_selected_action": [str(one.pk), str(two.pk)],
                },
            )
            assert done.status_code == 302
            page = await browser.get("/admin/auth/user/")
            assert "Logged 2 user(s) out everywhere: 3 session(s) ended." in page.text
    finally:
        stop()
    assert not any([await _works(client, pair["access"]) for pair in pairs])
    assert await _works(client, kept["access"])
    assert sorted((f["user_id"], f["sessions"], f["reason"]) for _, f in seen) == sorted(
        [(one.pk, 2, "admin"), (two.pk, 1, "admin")]
    )


async def test_staff_without_change_permission_sees_but_cannot_revoke(client, make_user):
    viewer = await _viewer(make_user)
    target = await make_user()
    pair = await _api_login(target, "198.51.100.9", "viewer-test")
    async with _browser(viewer) as browser:
        page = await browser.get(_change_url(target))
        assert page.status_code == 200
        assert "198.51.100.9" in page.text
        assert "/sessions/revoke-all/" not in page.text and 'value="Revoke"' not in page.text
        token = _csrf(page)
        sid = _sid(pair["access"])
        for url in (
            f"/admin/auth/user/{target.pk}/sessions/{sid}/revoke/",
            f"/admin/auth/user/{target.pk}/sessions/revoke-all/",
        ):
            refused = await browser.post(url, data={"csrfmiddlewaretoken": token})
            assert refused.status_code == 403
        listing = await browser.get("/admin/auth/user/")
        assert "log_out_everywhere" not in listing.text
        await browser.post(
            "/admin/auth/user/",
            data={
                "csrfmiddlewaretoken": _csrf(listing),
                "action": "log_out_everywhere",
                "_selected_action": [str(target.pk)],
            },
        )
    assert await _works(client, pair["access"])


async def test_non_staff_cannot_revoke(client, make_user):
    member = await make_user()  # a valid password, no staff flag
    target = await make_user()
    pair = await _api_login(target, "127.0.0.1", "x")
    async with _browser(member) as browser:
        page = await browser.get("/admin/login/")
        url = f"/admin/auth/user/{target.pk}/sessions/revoke-all/"
        refused = await browser.post(url, data={"csrfmiddlewaretoken": _csrf(page)})
        assert refused.status_code == 302 and "/admin/login/" in refused.headers["location"]
        assert (await browser.get(_change_url(target))).status_code == 302
    async with _browser() as anonymous:
        page = await anonymous.get("/admin/login/")
        refused = await anonymous.post(url, data={"csrfmiddlewaretoken": _csrf(page)})
        assert refused.status_code == 302
    assert await _works(client, pair["access"])

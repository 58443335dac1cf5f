"""Django's middleware without thread hops: the API pays none, the admin still works."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

import httpx
from asgiref import sync

from tests.conftest import PASSWORD, ROOT, bearer, login


async def test_an_authenticated_api_request_takes_no_middleware_thread_hop(client, user):
    pair = await login(client, user)
    calls = []
    original = sync.SyncToAsync.__call__

    async def counting(self, *args, **kwargs):
        calls.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await original(self, *args, **kwargs)

    sync.SyncToAsync.__call__ = counting  # type: ignore[method-assign]
    try:
        for _ in range(5):
            response = await client.get("/demo/async", headers=bearer(pair["access"]))
            assert response.status_code == 200
    finally:
        sync.SyncToAsync.__call__ = original  # type: ignore[method-assign]
    # what is left is Django's core, per request: request_started (its receivers are
    # sync) and closing the response, which sends request_finished; no middleware, no auth
    assert sorted(set(calls)) == ["HttpResponseBase.close", "Signal.asend.<locals>.sync_send"]
    assert len(calls) == 5 * 2


async def test_security_headers_are_still_set(client, user):
    pair = await login(client, user)
    response = await client.get("/api/auth/me", headers=bearer(pair["access"]))
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"


async def test_the_admin_logs_in_with_session_and_csrf(make_user):
    from project.asgi import application

    staff = await make_user(is_staff=True, is_superuser=True)
    transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 50003))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as browser:
        page = await browser.get("/admin/login/")
        assert page.status_code == 200 and "csrfmiddlewaretoken" in page.text
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert found is not None
        token = found[1]
        form = {"username": staff.username, "password": PASSWORD, "next": "/admin/"}
        forged = await browser.post("/admin/login/", data=form)  # no CSRF token
        assert forged.status_code == 403
        assert forged.json()["code"] == "permission_denied"
        done = await browser.post("/admin/login/", data={**form, "csrfmiddlewaretoken": token})
        assert done.status_code == 302 and done.headers["Location"] == "/admin/"
        index = await browser.get("/admin/")
        assert index.status_code == 200 and "Site administration" in index.text
        assert index.headers["X-Frame-Options"] == "DENY"


def test_deploy_checks_see_our_middleware_as_djangos():
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHAPI_")}
    env.update(DJANGO_SETTINGS_MODULE="project.settings",
               AUTHAPI_DATA_DIR=tempfile.mkdtemp(prefix="authapi-deploy-"))  # fmt: skip
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = result.stdout + result.stderr
    for expected in ("security.W004", "security.W008", "security.W016"):
        assert expected in output, output
    for absent in ("security.W001", "security.W002", "security.W003"):
        assert absent not in output, output

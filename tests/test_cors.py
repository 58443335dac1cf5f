"""Browser apps on another origin: DJANGO_CORS_ALLOWED_ORIGINS (django-cors-headers),
real preflights and credentialed requests against a live server; none allowed by default."""

from __future__ import annotations

import httpx

from tests.conftest import PASSWORD, LiveServer, bearer

APP = "http://127.0.0.1:5173"


def _preflight(origin: str, method: str = "POST", headers: str = "content-type,x-csrf-token"):
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


async def test_by_default_no_origin_is_allowed(client):
    response = await client.options("/api/auth/login", headers=_preflight(APP))
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_preflight_and_credentialed_calls_from_an_allowed_origin(make_user):
    user = await make_user()
    env = {"DJANGO_CORS_ALLOWED_ORIGINS": f"{APP},https://app.example.com", "AUTHAPI_COOKIES": "1"}
    with LiveServer("--no-proxy-headers", env=env) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            pre = await http.options("/api/auth/login", headers=_preflight(APP))
            assert pre.status_code == 200
            assert pre.headers["Access-Control-Allow-Origin"] == APP
            assert pre.headers["Access-Control-Allow-Credentials"] == "true"
            allowed = {h.strip() for h in pre.headers["Access-Control-Allow-Headers"].split(",")}
            assert {"content-type", "x-csrf-token", "authorization"} <= allowed
            assert "POST" in pre.headers["Access-Control-Allow-Methods"]
            me_pre = await http.options(
                "/api/auth/me", headers=_preflight(APP, "GET", "authorization")
            )
            assert me_pre.headers["Access-Control-Allow-Origin"] == APP

            login = await http.post(
                "/api/auth/login",
                json={"username": user.username, "password": PASSWORD},
                headers={"Origin": APP, "Sec-Fetch-Site": "same-site"},
            )
            assert login.status_code == 200
            assert login.headers["Access-Control-Allow-Origin"] == APP
            assert "authapi_access" in http.cookies and "refresh" not in login.json()
            me = await http.get("/api/auth/me", headers={"Origin": APP})  # the cookie alone
            assert me.status_code == 200 and me.headers["Access-Control-Allow-Origin"] == APP
            assert "WWW-Authenticate" in me.headers["Access-Control-Expose-Headers"]

            foreign = await http.options(
                "/api/auth/login", headers=_preflight("http://evil.example")
            )
            assert "Access-Control-Allow-Origin" not in foreign.headers
            stolen = await http.get(
                "/api/auth/me",
                headers={"Origin": "http://evil.example", **bearer(login.json()["access"])},
            )
            assert "Access-Control-Allow-Origin" not in stolen.headers  # the page cannot read it


def test_allowed_origins_get_cors_on_the_api_only_and_no_csrf_trust(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    script = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.CORS_ALLOWED_ORIGINS, s.CSRF_TRUSTED_ORIGINS, s.CORS_URLS_REGEX]))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings",
           "AUTHAPI_DATA_DIR": str(tmp_path), "DJANGO_CORS_ALLOWED_ORIGINS": APP,
           "DJANGO_CSRF_TRUSTED_ORIGINS": "https://admin.example.com"}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    cors, csrf, paths = json.loads(out.stdout)
    assert cors == [APP]
    assert csrf == ["https://admin.example.com"]  # the app's origin may not post admin forms
    assert paths == "^/api/"

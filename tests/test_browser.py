"""Real browser tests: Playwright (PyPI) driving Debian's ``chromium`` package, headless.

* The docs UI at ``/api/docs``: "Try it out" logs in, "Authorize" takes the access token,
  ``GET /api/auth/me`` answers 200 in the page; no request leaves 127.0.0.1.
* examples/spa, a plain-JS single-page app served from another origin (another port) in
  cookie mode with CORS: login, ``/me``, refresh before ``expires_in`` runs out, a reload,
  log out everywhere (another browser's session ends too), a replayed refresh cookie.

Skipped, saying what is missing, without the playwright package or without a Chromium at
``TEST_CHROMIUM`` (default /usr/bin/chromium; scripts/test installs Debian's package when it
runs as root). Playwright's own browser download is never used. (Not ``AUTHAPI_*`` names:
conftest clears those before any test module loads.)

Screenshots of every step go to ``TEST_SCREENSHOTS/<test>/`` when that is set, else to the
test's pytest tmp folder; the suite prints the folder after each test.

Only the docs test intercepts requests (``route``): Playwright answers CORS preflights
itself while interception is on, which would hide the API's real ones from the SPA tests.
Those see every request through events instead, and Chromium resolves no host name at all
(``--host-resolver-rules``), so nothing can leave the machine either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import PASSWORD, ROOT, LiveServer

try:
    from playwright.async_api import (
        Browser,
        BrowserContext,
        Locator,
        Page,
        Request,
        Route,
        async_playwright,
        expect,
    )
except ImportError:
    PLAYWRIGHT_MISSING = "the playwright package (PyPI) is not installed: pip install -e '.[test]'"
else:
    PLAYWRIGHT_MISSING = ""


def _chromium() -> tuple[str, str]:
    """The browser to drive, and why it cannot be ("" when it can)."""
    named = os.environ.get("TEST_CHROMIUM")
    path = named or "/usr/bin/chromium"
    if not named and not os.access(path, os.X_OK):
        path = shutil.which("chromium") or path
    if os.access(path, os.X_OK):
        return path, ""
    return path, (
        f"no Chromium binary at {path}: install Debian's package (apt-get install chromium; "
        "scripts/test does it when run as root) or point TEST_CHROMIUM at one"
    )


CHROMIUM, CHROMIUM_MISSING = _chromium()
pytestmark = pytest.mark.skipif(
    bool(PLAYWRIGHT_MISSING or CHROMIUM_MISSING),
    reason=PLAYWRIGHT_MISSING or CHROMIUM_MISSING,
)

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # No host name resolves: a request for anything but 127.0.0.1 fails in the browser.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
SPA = ROOT / "examples" / "spa"
TEST_SECONDS = 90  # each test's whole budget; every single wait has its own, shorter one
WAIT_MS = 10_000
LOGIN = "#operations-auth-authapi_api_login"
ME = "#operations-auth-authapi_api_me"


def _local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in {"data", "blob", "about"} or parts.hostname == "127.0.0.1"


class Shots:
    """``await shots(page, "step")``: ``NN-step.png`` of the whole page, in order; with
    ``focus=locator``, of the window scrolled to that element (the docs page is long)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    async def __call__(self, page: Page, step: str, focus: Locator | None = None) -> None:
        self.count += 1
        if focus is not None:
            await focus.scroll_into_view_if_needed()
        path = self.folder / f"{self.count:02d}-{step}.png"
        await page.screenshot(path=path, full_page=focus is None)


@pytest.fixture
def shots(
    request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Iterator[Shots]:
    base = os.environ.get("TEST_SCREENSHOTS")
    folder = Path(base) / request.node.name if base else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    yield Shots(folder)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    with capsys.disabled():  # shown with or without -s
        if reporter is not None:
            reporter.write_line(f"\nscreenshots of {request.node.name}: {folder}")


@contextlib.asynccontextmanager
async def launched(args: list[str]) -> AsyncIterator[Browser]:
    """Headless Chromium with ``args``; launch() gives it a new, empty --user-data-dir."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=args, headless=True, timeout=30_000
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with launched(ARGS) as browser:
        yield browser


class Tab:
    """A fresh browser context and page, recording what the page asked for and threw."""

    def __init__(self, context: BrowserContext, page: Page) -> None:
        self.context = context
        self.page = page
        self.foreign: list[str] = []  # requests for anything but 127.0.0.1
        self.errors: list[str] = []  # uncaught exceptions in the page
        context.on("request", self._request)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _request(self, request: Request) -> None:
        if not _local(request.url):
            self.foreign.append(request.url)

    async def block_foreign(self) -> None:
        """Abort, in the page, every request whose host is not 127.0.0.1."""

        async def handle(route: Route) -> None:
            if _local(route.request.url):
                await route.continue_()
            else:
                await route.abort("blockedbyclient")

        await self.context.route("**/*", handle)

    async def cookies(self, origin: str) -> dict[str, dict[str, Any]]:
        """The API's cookies in this browser, by name (the refresh one lives under /api/)."""
        return {c["name"]: dict(c) for c in await self.context.cookies(f"{origin}/api/")}


@pytest.fixture
async def tabs(browser: Browser, request: pytest.FixtureRequest, shots: Shots):
    """``await tabs()``: a new Tab (a new browser profile: its own cookies)."""
    opened: list[Tab] = []
    failed_before = request.session.testsfailed

    async def open_tab() -> Tab:
        context = await browser.new_context(viewport={"width": 1100, "height": 900})
        context.set_default_timeout(WAIT_MS)
        context.set_default_navigation_timeout(WAIT_MS)
        tab = Tab(context, await context.new_page())
        opened.append(tab)
        return tab

    yield open_tab
    for tab in opened:
        if request.session.testsfailed > failed_before:
            with contextlib.suppress(Exception):
                await shots(tab.page, "at-failure")
        await tab.context.close()


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


@contextlib.contextmanager
def static_site(folder: Path) -> Iterator[str]:
    """``folder`` served on a free loopback port, in a thread: yields its origin."""
    handler = functools.partial(_QuietFiles, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def api_server(**env: str) -> LiveServer:
    return LiveServer("--no-proxy-headers", env={"AUTHAPI_LOG_LEVEL": "WARNING", **env})


def cookie_mode_api(app_origin: str, **env: str) -> LiveServer:
    """The API in cookie mode, letting pages of ``app_origin`` call it with credentials."""
    return api_server(AUTHAPI_COOKIES="1", DJANGO_CORS_ALLOWED_ORIGINS=app_origin, **env)


async def spa_login(page: Page, username: str) -> None:
    await expect(page.locator("#status")).to_have_attribute("data-state", "signed-out")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("#login button[type=submit]")
    await expect(page.locator("#me")).to_have_attribute("data-status", "200")
    await expect(page.locator("#status")).to_have_text(f"signed in as {username}")


async def click_me(page: Page) -> int:
    """Click "Reload /me"; the status of that very request (also shown in #me)."""
    async with page.expect_response(lambda r: r.url.endswith("/api/auth/me")) as answer:
        await page.click("#show-me")
    status = (await answer.value).status
    await expect(page.locator("#me")).to_have_attribute("data-status", str(status))
    return status


# --- the docs UI -------------------------------------------------------------------------


async def test_docs_ui_logs_in_authorizes_and_calls_me(tabs, make_user, shots):
    user = await make_user()
    with api_server() as server:
        async with asyncio.timeout(TEST_SECONDS):
            tab = await tabs()
            await tab.block_foreign()
            page = tab.page
            await page.goto(f"{server.url}/api/docs")
            login = page.locator(LOGIN)
            await expect(login).to_be_visible()
            await shots(page, "docs-loaded", focus=login)

            await login.locator(".opblock-summary-control").click()
            await login.get_by_role("button", name="Try it out").click()
            body = login.locator("textarea.body-param__text")
            await expect(body).to_contain_text('"username"')  # the schema's example, first
            await body.fill(json.dumps({"username": user.username, "password": PASSWORD}))
            await shots(page, "login-try-it-out", focus=body)
            await login.get_by_role("button", name="Execute").click()
            answer = login.locator(".live-responses-table .response")
            await expect(answer.locator(".response-col_status")).to_have_text("200")
            shown = await answer.locator(".response-col_description pre").first.inner_text()
            pair = json.loads(shown)
            assert pair["token_type"] == "Bearer" and pair["access"].count(".") == 2
            await shots(page, "login-200", focus=answer)

            await page.locator(".auth-wrapper button.authorize").click()
            dialog = page.locator(".dialog-ux .modal-ux")
            await dialog.locator("input").fill(pair["access"])
            await shots(page, "authorize-dialog", focus=dialog)
            await dialog.locator(".auth-btn-wrapper button.authorize").click()
            await expect(dialog.locator("button", has_text="Logout")).to_be_visible()
            await shots(page, "authorized", focus=dialog)
            await dialog.locator("button.btn-done").click()
            await expect(dialog).to_have_count(0)

            me = page.locator(ME)
            await me.locator(".opblock-summary-control").click()
            await me.get_by_role("button", name="Try it out").click()
            await me.get_by_role("button", name="Execute").click()
            answer = me.locator(".live-responses-table .response")
            await expect(answer.locator(".response-col_status")).to_have_text("200")
            shown = await answer.locator(".response-col_description pre").first.inner_text()
            assert json.loads(shown)["username"] == user.username
            # The curl line the page shows: the call carried the pasted token.
            await expect(me.locator(".curl-command")).to_contain_text(
                f"Authorization: Bearer {pair['access']}"
            )
            await shots(page, "me-200", focus=answer)

    assert tab.foreign == [], "requests that left 127.0.0.1"
    assert tab.errors == []


# --- the example single-page app, on another origin -------------------------------------


async def test_spa_cookie_mode_login_refresh_reload_and_logout_everywhere(tabs, make_user, shots):
    user = await make_user()
    lifetime = 4  # the app refreshes at 3 s
    with (
        static_site(SPA) as app,
        cookie_mode_api(app, AUTHAPI_ACCESS_TOKEN_LIFETIME=str(lifetime)) as api,
    ):
        async with asyncio.timeout(TEST_SECONDS):
            tab = await tabs()
            page = tab.page
            url = f"{app}/?api={api.url}"
            assert urlsplit(app).port != urlsplit(api.url).port  # another origin
            await page.goto(url)
            await expect(page.locator("#api")).to_have_text(api.url)
            await shots(page, "signed-out")

            await spa_login(page, user.username)
            logged_in = time.monotonic()
            jar = await tab.cookies(api.url)
            assert {"authapi_access", "authapi_refresh", "authapi_csrf"} <= set(jar)
            assert jar["authapi_access"]["httpOnly"] and jar["authapi_refresh"]["httpOnly"]
            assert not jar["authapi_csrf"]["httpOnly"]  # the page echoes it in X-CSRF-Token
            first_access = jar["authapi_access"]["value"]
            await shots(page, "logged-in")

            # Past the access token's lifetime: the app's timer refreshed in time.
            await expect(page.locator("#refreshes")).to_have_text("2", timeout=3 * WAIT_MS)
            assert time.monotonic() - logged_in > lifetime
            assert await click_me(page) == 200
            assert (await tab.cookies(api.url))["authapi_access"]["value"] != first_access
            await expect(page.locator("#me")).to_contain_text(user.username)
            await shots(page, "past-access-lifetime")

            # A reload keeps the session: the new page refreshes, then shows /me.
            async with page.expect_response(lambda r: r.url.endswith("/api/auth/me")) as me:
                await page.reload()
            assert (await me.value).status == 200
            await expect(page.locator("#status")).to_have_text(f"signed in as {user.username}")
            await shots(page, "reloaded")

            # The same user in another browser: logging out everywhere ends that one too.
            other = await tabs()
            await other.page.goto(url)
            await spa_login(other.page, user.username)
            await shots(other.page, "other-browser-logged-in")

            await page.click("#logout-all")
            await expect(page.locator("#status")).to_have_text(
                re.compile(r"^logged out: /api/auth/logout-all answered 204; /me answers 401 ")
            )
            await expect(page.locator("#me")).to_have_attribute("data-status", "401")
            assert not set(await tab.cookies(api.url)) & {"authapi_access", "authapi_refresh"}
            await shots(page, "logged-out-everywhere")

            assert await click_me(other.page) == 401
            await expect(other.page.locator("#me")).to_contain_text("token_not_valid")
            await expect(other.page.locator("#status")).to_have_attribute(
                "data-state", "signed-out"
            )
            await shots(other.page, "other-browser-401")

    assert tab.foreign == other.foreign == [], "requests that left 127.0.0.1"
    assert tab.errors == other.errors == []


async def test_spa_replayed_refresh_cookie_ends_the_session(tabs, make_user, shots):
    user = await make_user()
    with static_site(SPA) as app, cookie_mode_api(app) as api:
        async with asyncio.timeout(TEST_SECONDS):
            tab = await tabs()
            page = tab.page
            await page.goto(f"{app}/?api={api.url}")
            await spa_login(page, user.username)
            spent = (await tab.cookies(api.url))["authapi_refresh"]
            await shots(page, "logged-in")

            await page.click("#refresh")
            await expect(page.locator("#refreshes")).to_have_text("1")
            assert (await tab.cookies(api.url))["authapi_refresh"]["value"] != spent["value"]
            assert await click_me(page) == 200
            await shots(page, "refreshed")

            # Someone who copied the first refresh cookie replays it from this browser.
            await tab.context.add_cookies(
                [
                    {
                        "name": spent["name"],
                        "value": spent["value"],
                        "domain": spent["domain"],
                        "path": spent["path"],
                        "expires": spent["expires"],
                        "httpOnly": spent["httpOnly"],
                        "secure": spent["secure"],
                        "sameSite": spent["sameSite"],
                    }
                ]
            )
            jar = await tab.cookies(api.url)
            assert jar["authapi_refresh"]["value"] == spent["value"]
            await page.click("#refresh")
            await expect(page.locator("#status")).to_have_text(
                re.compile(
                    r"^session ended: refresh answered 401 token_not_valid.*; /me answers 401 "
                )
            )
            await expect(page.locator("#me")).to_have_attribute("data-status", "401")
            # Refused although the browser still holds the access cookie of the good refresh:
            # reuse revoked the whole session, that token included.
            assert "authapi_access" in await tab.cookies(api.url)
            assert await click_me(page) == 401
            await shots(page, "replayed-refresh-401")

    assert tab.foreign == [], "requests that left 127.0.0.1"
    assert tab.errors == []


async def test_spa_on_an_origin_cors_does_not_allow_cannot_log_in(tabs, make_user, shots):
    user = await make_user()
    with static_site(SPA) as allowed, static_site(SPA) as other, cookie_mode_api(allowed) as api:
        async with asyncio.timeout(TEST_SECONDS):
            tab = await tabs()
            page = tab.page
            await page.goto(f"{other}/?api={api.url}")
            await expect(page.locator("#status")).to_have_attribute("data-state", "signed-out")
            await page.fill("input[name=username]", user.username)
            await page.fill("input[name=password]", PASSWORD)
            await page.click("#login button[type=submit]")
            # The real preflight fails: fetch rejects, the POST is never sent.
            await expect(page.locator("#error")).to_have_text("TypeError: Failed to fetch")
            assert not set(await tab.cookies(api.url)) & {"authapi_access", "authapi_csrf"}
            await shots(page, "cors-refused")

    assert tab.foreign == []


async def test_spa_dpop_mode_binds_the_session_to_a_key_the_page_cannot_export(
    tabs, make_user, shots
):
    """examples/spa?mode=dpop: a non-extractable WebCrypto key in IndexedDB signs a proof
    for every call; tokens copied out of the page are refused without that key."""
    import httpx

    from tests.dpop_client import Key

    user = await make_user()
    lifetime = 4  # the app refreshes at 3 s
    with (
        static_site(SPA) as app,
        api_server(
            DJANGO_CORS_ALLOWED_ORIGINS=app, AUTHAPI_ACCESS_TOKEN_LIFETIME=str(lifetime)
        ) as api,
    ):
        async with asyncio.timeout(TEST_SECONDS):
            tab = await tabs()
            page = tab.page
            await page.goto(f"{app}/?api={api.url}&mode=dpop")
            await expect(page.locator("#mode")).to_contain_text("DPoP")
            await spa_login(page, user.username)
            assert await tab.cookies(api.url) == {}  # no cookie carries anything
            await shots(page, "dpop-logged-in")

            stored = """async () => {
              const db = await new Promise((ok, no) => {
                const r = indexedDB.open("authapi-dpop", 1); r.onsuccess = () => ok(r.result);
                r.onerror = () => no(r.error);
              });
              const read = (name) => new Promise((ok) => {
                const r = db.transaction("kv").objectStore("kv").get(name);
                r.onsuccess = () => ok(r.result);
              });
              const key = await read("key"), tokens = await read("tokens");
              let exported = "refused";
              try { await crypto.subtle.exportKey("jwk", key.privateKey); exported = "exported"; }
              catch (e) { exported = "refused"; }
              return {tokens, extractable: key.privateKey.extractable, exported};
            }"""
            found = await page.evaluate(stored)
            assert found["extractable"] is False and found["exported"] == "refused"
            stolen = found["tokens"]

            # Past the access lifetime the app's timer refreshed, each time with a proof.
            await expect(page.locator("#refreshes")).to_have_text("2", timeout=3 * WAIT_MS)
            assert await click_me(page) == 200
            await expect(page.locator("#me")).to_contain_text(user.username)
            # A reload keeps the session: the key and the tokens are in IndexedDB.
            async with page.expect_response(lambda r: r.url.endswith("/api/auth/me")) as me:
                await page.reload()
            assert (await me.value).status == 200
            await shots(page, "dpop-reloaded")

            # What a thief copies out of the page is useless without the key.
            current = (await page.evaluate(stored))["tokens"]
            thief = Key()
            async with httpx.AsyncClient(base_url=api.url) as http:
                as_bearer = await http.get(
                    "/api/auth/me", headers={"Authorization": f"Bearer {current['access']}"}
                )
                assert as_bearer.status_code == 401
                me_url = f"{api.url}/api/auth/me"
                with_thief_key = await http.get(
                    "/api/auth/me",
                    headers={
                        "Authorization": f"DPoP {current['access']}",
                        "DPoP": thief.proof("GET", me_url, token=current["access"]),
                    },
                )
                assert with_thief_key.status_code == 401
                refresh_url = f"{api.url}/api/auth/refresh"
                for headers in ({}, {"DPoP": thief.proof("POST", refresh_url)}):
                    refused = await http.post(
                        "/api/auth/refresh", json={"refresh": current["refresh"]}, headers=headers
                    )
                    assert refused.status_code == 400, refused.text
                # The first pair, spent by the app's refreshes, is no better.
                old = await http.get(
                    "/api/auth/me", headers={"Authorization": f"Bearer {stolen['access']}"}
                )
                assert old.status_code == 401
            # The thief's tries spent nothing: the page still refreshes and calls /me.
            await page.click("#refresh")
            assert await click_me(page) == 200

            await page.click("#logout")
            await expect(page.locator("#status")).to_have_text(
                re.compile(r"^logged out: /api/auth/logout answered 204; /me answers 401 ")
            )
            await shots(page, "dpop-logged-out")

    assert tab.foreign == [], "requests that left 127.0.0.1"
    assert tab.errors == []

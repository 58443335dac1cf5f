"""Passkeys in a real browser: Chromium's virtual authenticator (CDP ``WebAuthn``) against a
live accounts server, through allauth's headless WebAuthn endpoints, ending in our tokens.

* A verified user registers a passkey from a page of the server's own origin
  (``http://localhost:<port>``: WebAuthn wants a secure context and a domain as RP ID), then
  signs in with it alone: our pair, a session at ``/api/auth/sessions``, ``amr`` ``["hwk"]``.
* With the passkey active, the password alone gets no session: ``/api/auth/login`` answers
  401 ``mfa_required``, allauth's login stops at its pending ``mfa_authenticate`` stage, and
  the passkey as the second factor completes it (``amr`` ``["pwd", "hwk", "mfa"]``).
* Attacks: an assertion replayed (on its own flow, or answering a new challenge), and one
  signed by the user's own key for another origin, are refused and make no session.

The page is one URL of the server's origin answered by the test (``route``), so its calls
to ``/_allauth/app/v1`` are same-origin. Skipped the way tests/test_browser.py is, without
the playwright package or a Chromium. Chromium resolves ``localhost`` and ``127.0.0.1`` only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import struct
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests import test_browser
from tests.accounts_server import PASSWORD, AccountsServer, meta
from tests.test_browser import (
    ARGS,
    CHROMIUM_MISSING,
    PLAYWRIGHT_MISSING,
    TEST_SECONDS,
    WAIT_MS,
    Shots,
)

if not PLAYWRIGHT_MISSING:
    from playwright.async_api import Browser, BrowserContext, CDPSession, Page

shots = test_browser.shots  # the fixture: screenshots folder per test, printed after it
pytestmark = pytest.mark.skipif(
    bool(PLAYWRIGHT_MISSING or CHROMIUM_MISSING),
    reason=PLAYWRIGHT_MISSING or CHROMIUM_MISSING,
)

# As tests/test_browser.py, but "localhost" resolves too: the RP ID must be a domain.
BROWSER_ARGS = [
    *(arg for arg in ARGS if not arg.startswith("--host-resolver-rules=")),
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]
PAGE = "/passkeys-test-page"
AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
    "automaticPresenceSimulation": True,
}

# The page: allauth's app API called from the server's own origin, WebAuthn by the book
# (parse...FromJSON, navigator.credentials, toJSON). Each helper answers what it saw.
HTML = """<!doctype html>
<meta charset="utf-8"><title>passkeys</title>
<h1>passkeys</h1><pre id="log"></pre>
<script>
const API = "/_allauth/app/v1";
const log = (line) => { document.getElementById("log").textContent += line + "\\n"; };

async function call(method, path, {token, session, body} = {}) {
  const headers = {"Accept": "application/json"};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers["Authorization"] = "Bearer " + token;
  if (session) headers["X-Session-Token"] = session;
  const answer = await fetch(API + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await answer.text();
  log(`${method} ${path} -> ${answer.status}`);
  let json = null;
  try { json = JSON.parse(text); } catch (e) { json = {text}; }
  return {status: answer.status, body: json};
}

async function create(options) {
  const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(options.publicKey);
  return (await navigator.credentials.create({publicKey})).toJSON();
}

async function assert_(options) {
  const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(options.publicKey);
  return (await navigator.credentials.get({publicKey})).toJSON();
}

// A passkey for the user of `token`: allauth asks for a recent password first, then the
// creation options, the ceremony, the credential posted.
window.registerPasskey = async (token, password, name) => {
  const again = await call("POST", "/auth/reauthenticate", {token, body: {password}});
  if (again.status !== 200) return {step: "reauthenticate", ...again};
  const options = await call(
    "GET", "/account/authenticators/webauthn?passwordless", {token});
  if (options.status !== 200) return {step: "options", ...options};
  const credential = await create(options.body.data.creation_options);
  const added = await call(
    "POST", "/account/authenticators/webauthn", {token, body: {name, credential}});
  return {step: "added", ...added, credential};
};

// Sign in with a passkey alone: a new flow, its challenge, the assertion posted.
window.passkeyLogin = async () => {
  const options = await call("GET", "/auth/webauthn/login");
  if (options.status !== 200) return {step: "options", ...options};
  const session = options.body.meta.session_token;
  const credential = await assert_(options.body.data.request_options);
  const done = await call("POST", "/auth/webauthn/login", {session, body: {credential}});
  return {step: "posted", ...done, session, options: options.body, credential};
};

// The passkey as the second factor of the pending flow `session`.
window.secondFactor = async (session) => {
  const options = await call("GET", "/auth/webauthn/authenticate", {session});
  if (options.status !== 200) return {step: "options", ...options};
  const credential = await assert_(options.body.data.request_options);
  const done = await call(
    "POST", "/auth/webauthn/authenticate", {session, body: {credential}});
  return {step: "posted", ...done, credential};
};

window.call = call;
</script>
"""


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def amr(access: str) -> list[str]:
    """The ``amr`` claim of an access token (read, not verified: the server verifies)."""
    payload = access.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return list(claims["amr"])


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def session_ids(server: AccountsServer, access: str) -> set[str]:
    answer = httpx.get(f"{server.url}/api/auth/sessions", headers=bearer(access))
    assert answer.status_code == 200, answer.text
    return {s["id"] for s in answer.json()}


def forged(stored: dict[str, Any], challenge: str, origin: str, rp_id: str) -> dict[str, Any]:
    """An assertion signed with the passkey's own private key (read from the virtual
    authenticator), saying what an attacker's client chooses: ``origin``, ``rp_id``."""
    key = serialization.load_der_private_key(base64.b64decode(stored["privateKey"]), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    client_data = json.dumps(
        {"type": "webauthn.get", "challenge": challenge, "origin": origin, "crossOrigin": False}
    ).encode()
    flags = 0x01 | 0x04  # user present, user verified
    auth_data = (
        hashlib.sha256(rp_id.encode()).digest()
        + bytes([flags])
        + struct.pack(">I", stored["signCount"] + 1)
    )
    signature = key.sign(
        auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
    )
    credential_id = b64url(base64.b64decode(stored["credentialId"]))
    return {
        "id": credential_id,
        "rawId": credential_id,
        "type": "public-key",
        "authenticatorAttachment": "platform",
        "response": {
            "clientDataJSON": b64url(client_data),
            "authenticatorData": b64url(auth_data),
            "signature": b64url(signature),
            "userHandle": b64url(base64.b64decode(stored["userHandle"])),
        },
        "clientExtensionResults": {},
    }


@pytest.fixture(scope="module")
def server():
    with AccountsServer() as live:
        yield live


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with test_browser.launched(BROWSER_ARGS) as browser:
        yield browser


class Passkeys:
    """A new browser profile with one virtual authenticator, on the page of ``origin``."""

    def __init__(self, context: BrowserContext, page: Page, cdp: CDPSession, origin: str):
        self.context, self.page, self.cdp, self.origin = context, page, cdp, origin
        self.authenticator = ""
        self.foreign: list[str] = []
        self.errors: list[str] = []

    async def open(self) -> None:
        self.context.on("request", self._request)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        await self.page.route(f"{self.origin}{PAGE}", self._serve)
        await self.cdp.send("WebAuthn.enable")
        added = await self.cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})
        self.authenticator = added["authenticatorId"]
        await self.page.goto(f"{self.origin}{PAGE}")

    def _request(self, request: Any) -> None:
        if urlsplit(request.url).hostname not in {"localhost", "127.0.0.1"}:
            self.foreign.append(request.url)

    @staticmethod
    async def _serve(route: Any) -> None:
        await route.fulfill(status=200, content_type="text/html; charset=utf-8", body=HTML)

    async def run(self, function: str, *args: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.page.evaluate(
            f"(args) => window.{function}(...args)", list(args)
        )
        return result

    async def credentials(self) -> list[dict[str, Any]]:
        found = await self.cdp.send(
            "WebAuthn.getCredentials", {"authenticatorId": self.authenticator}
        )
        return list(found["credentials"])


@pytest.fixture
async def passkeys(browser, server, request: pytest.FixtureRequest, shots: Shots):
    """``await passkeys()``: a Passkeys tab on ``http://localhost:<port>``."""
    opened: list[Passkeys] = []
    failed_before = request.session.testsfailed
    origin = server.url.replace("127.0.0.1", "localhost")

    async def open_tab() -> Passkeys:
        context = await browser.new_context(viewport={"width": 900, "height": 600})
        context.set_default_timeout(WAIT_MS)
        context.set_default_navigation_timeout(WAIT_MS)
        page = await context.new_page()
        tab = Passkeys(context, page, await context.new_cdp_session(page), origin)
        opened.append(tab)
        await tab.open()
        return tab

    yield open_tab
    for tab in opened:
        if request.session.testsfailed > failed_before:
            with contextlib.suppress(Exception):
                await shots(tab.page, "at-failure")
        await tab.context.close()


def host(tab: Passkeys) -> str:
    """The ``Host`` the browser sends (``localhost:<port>``): allauth takes the RP ID from
    it, so a call from outside the page says it too."""
    return urlsplit(tab.origin).netloc


async def registered(tab: Passkeys, server: AccountsServer, email: str) -> dict[str, Any]:
    """A verified account with a passkey made in ``tab``: the verification's tokens."""
    tokens = server.signup(email)
    added = await tab.run("registerPasskey", tokens["access_token"], PASSWORD, "laptop")
    assert (added["step"], added["status"]) == ("added", 200), added
    assert added["body"]["data"]["type"] == "webauthn"
    return tokens


async def test_register_a_passkey_then_sign_in_with_it_alone(passkeys, server, shots):
    email = "pia@example.com"
    async with asyncio.timeout(TEST_SECONDS):
        tab = await passkeys()
        tokens = await registered(tab, server, email)
        stored = await tab.credentials()
        assert len(stored) == 1 and stored[0]["rpId"] == "localhost"
        assert stored[0]["isResidentCredential"]
        await shots(tab.page, "registered")
        listed = httpx.get(
            f"{server.api}/account/authenticators", headers=bearer(tokens["access_token"])
        )
        assert [a["type"] for a in listed.json()["data"]] == ["webauthn", "recovery_codes"]
        before = session_ids(server, tokens["access_token"])

        login = await tab.run("passkeyLogin")
        assert (login["step"], login["status"]) == ("posted", 200), login
        await shots(tab.page, "signed-in")
        pair = login["body"]["meta"]
        access, refresh = pair["access_token"], pair["refresh_token"]
        assert amr(access) == ["hwk"]

        me = httpx.get(f"{server.url}/api/auth/me", headers=bearer(access))
        assert me.status_code == 200 and me.json()["email"] == email
        after = session_ids(server, access)
        assert len(after - before) == 1 and before <= after
        fresh = httpx.post(f"{server.url}/api/auth/refresh", json={"refresh": refresh})
        assert fresh.status_code == 200, fresh.text
        assert amr(fresh.json()["access"]) == ["hwk"]  # kept across refreshes

    assert tab.foreign == [] and tab.errors == []


async def test_password_alone_is_refused_and_the_passkey_completes_the_second_factor(
    passkeys, server, shots
):
    email = "paul@example.com"
    async with asyncio.timeout(TEST_SECONDS):
        tab = await passkeys()
        tokens = await registered(tab, server, email)
        before = session_ids(server, tokens["access_token"])

        # Our own door: the right password of an account with a passkey is not enough.
        ours = httpx.post(
            f"{server.url}/api/auth/login", json={"username": email, "password": PASSWORD}
        )
        assert ours.status_code == 401, ours.text
        assert ours.json()["code"] == "mfa_required"
        assert "access" not in ours.json() and "refresh" not in ours.json()
        assert session_ids(server, tokens["access_token"]) == before

        # allauth's door: a flow pending its second factor, no tokens.
        pending = httpx.post(
            f"{server.api}/auth/login", json={"email": email, "password": PASSWORD}
        )
        assert pending.status_code == 401, pending.text
        stage = meta(pending)
        assert "access_token" not in stage and "refresh_token" not in stage
        flows = {f["id"]: f for f in pending.json()["data"]["flows"]}
        assert flows["mfa_authenticate"].get("is_pending") is True
        assert "webauthn" in flows["mfa_authenticate"]["types"]
        session = stage["session_token"]
        # The pending flow's handle is no access token anywhere.
        me = httpx.get(f"{server.url}/api/auth/me", headers=bearer(session))
        assert me.status_code == 401
        assert session_ids(server, tokens["access_token"]) == before

        done = await tab.run("secondFactor", session)
        assert (done["step"], done["status"]) == ("posted", 200), done
        await shots(tab.page, "second-factor-done")
        access = done["body"]["meta"]["access_token"]
        assert amr(access) == ["pwd", "hwk", "mfa"]
        me = httpx.get(f"{server.url}/api/auth/me", headers=bearer(access))
        assert me.status_code == 200 and me.json()["email"] == email
        after = session_ids(server, access)
        assert len(after - before) == 1

        # That second-factor assertion, replayed on a new pending flow, is refused.
        pending = httpx.post(
            f"{server.api}/auth/login", json={"email": email, "password": PASSWORD}
        )
        assert pending.status_code == 401, pending.text
        replay = httpx.post(
            f"{server.api}/auth/webauthn/authenticate",
            json={"credential": done["credential"]},
            headers={"X-Session-Token": meta(pending)["session_token"], "Host": host(tab)},
        )
        assert replay.status_code == 400, replay.text
        assert replay.json()["errors"][0]["param"] == "credential", replay.text
        assert "access_token" not in meta(replay)
        assert session_ids(server, access) == after

    assert tab.foreign == [] and tab.errors == []


async def test_a_replayed_passkey_assertion_is_refused_and_makes_no_session(
    passkeys, server, shots
):
    email = "rita@example.com"
    async with asyncio.timeout(TEST_SECONDS):
        tab = await passkeys()
        tokens = await registered(tab, server, email)
        login = await tab.run("passkeyLogin")
        assert login["status"] == 200, login
        captured, spent_flow = login["credential"], login["session"]
        before = session_ids(server, tokens["access_token"])

        # The same assertion again, on the flow it answered: its challenge is spent.
        again = await tab.run(
            "call", "POST", "/auth/webauthn/login",
            {"session": spent_flow, "body": {"credential": captured}},
        )  # fmt: skip
        assert again["status"] == 410, again  # the flow's handle is gone with its login
        assert "access_token" not in (again["body"].get("meta") or {})

        # The same assertion answering a new flow's challenge (someone who copied it).
        fresh = await tab.run("call", "GET", "/auth/webauthn/login")
        assert fresh["status"] == 200, fresh
        replay = await tab.run(
            "call", "POST", "/auth/webauthn/login",
            {"session": fresh["body"]["meta"]["session_token"], "body": {"credential": captured}},
        )  # fmt: skip
        assert replay["status"] == 400, replay
        assert "access_token" not in (replay["body"].get("meta") or {})
        assert replay["body"]["errors"][0]["param"] == "credential", replay
        await shots(tab.page, "replays-refused")

        assert session_ids(server, tokens["access_token"]) == before
        # The authenticator itself still signs in: the refusals cost the user nothing.
        assert (await tab.run("passkeyLogin"))["status"] == 200

    assert tab.foreign == [] and tab.errors == []


async def test_an_assertion_for_another_origin_or_rp_is_refused(passkeys, server):
    """Signed by the user's own passkey over a fresh challenge, so only what it claims
    differs; the same forgery for the right origin and RP ID signs in (the control)."""
    email = "otto@example.com"
    async with asyncio.timeout(TEST_SECONDS):
        tab = await passkeys()
        tokens = await registered(tab, server, email)
        (stored,) = await tab.credentials()
        before = session_ids(server, tokens["access_token"])

        def attempt(origin: str, rp_id: str) -> httpx.Response:
            with httpx.Client(base_url=server.api, headers={"Host": host(tab)}) as client:
                options = client.get("/auth/webauthn/login")
                assert options.status_code == 200, options.text
                challenge = options.json()["data"]["request_options"]["publicKey"]["challenge"]
                return client.post(
                    "/auth/webauthn/login",
                    json={"credential": forged(stored, challenge, origin, rp_id)},
                    headers={"X-Session-Token": meta(options)["session_token"]},
                )

        for origin, rp_id in [
            ("https://evil.example", "localhost"),
            ("http://evil.example", "localhost"),
            (tab.origin, "evil.example"),
            ("https://evil.example", "evil.example"),
        ]:
            refused = attempt(origin, rp_id)
            assert refused.status_code == 400, (origin, rp_id, refused.text)
            assert "access_token" not in meta(refused)
        assert session_ids(server, tokens["access_token"]) == before

        control = attempt(tab.origin, "localhost")
        assert control.status_code == 200, control.text
        assert amr(meta(control)["access_token"]) == ["hwk"]

    assert tab.foreign == [] and tab.errors == []

"""Attacks on the join of allauth's headless flows and this service's sessions, over HTTP
against a live accounts server (real hashing, real Redis): replayed second factors,
pending flows' handles used as tokens, password-only logins at our door, replays and
logouts across the two doors, racing refreshes, a stalled store.

Each test checks the refusal (``{"detail", "code"}`` at our doors, allauth's own shape at
its doors) and then what the attack left behind: the owner's sessions, counted at
``/api/auth/sessions``, and which tokens still work.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from itertools import count

import httpx
import jwt
import pyotp
import pytest

from tests.accounts_server import PASSWORD, AccountsServer, meta

TIMEOUT = httpx.Timeout(30)
_emails = count()


@pytest.fixture(scope="module")
def server():
    with AccountsServer() as live:
        yield live


def _email(what: str) -> str:
    return f"{what}-{next(_emails)}@example.com"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post(url: str, body: dict, **kw) -> httpx.Response:
    return httpx.post(url, json=body, timeout=TIMEOUT, **kw)


def get(url: str, **kw) -> httpx.Response:
    return httpx.get(url, timeout=TIMEOUT, **kw)


def signup(server, email: str) -> str:
    """A new account, its address not verified: the pending flow's session token."""
    pending = post(f"{server.api}/auth/signup", {"email": email, "password": PASSWORD})
    assert pending.status_code == 401, pending.text
    assert _pending(pending) == "verify_email"
    return meta(pending)["session_token"]


def verify(server, email: str, session_token: str) -> dict:
    key = server.link_key(server.wait_for_mail(email), "verify-email")
    done = post(
        f"{server.api}/auth/email/verify", {"key": key}, headers={"X-Session-Token": session_token}
    )
    assert done.status_code == 200, done.text
    return meta(done)


def account(server, what: str) -> tuple[str, dict]:
    """A verified account: its email and the tokens of the verify flow's session."""
    email = _email(what)
    return email, verify(server, email, signup(server, email))


@pytest.fixture(scope="module")
def member(server):
    """A verified account whose sessions the cross-door tests attack, one family each."""
    email, _ = account(server, "member")
    return email


def family_and_bystander(server, email: str) -> tuple[dict, str]:
    """A session minted by allauth's login (its tokens), and the sid of another session of
    the same user from our login, which no attack on the first may touch."""
    answer = post(f"{server.api}/auth/login", {"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    other = post(f"{server.url}/api/auth/login", {"username": email, "password": PASSWORD})
    assert other.status_code == 200, other.text
    return meta(answer), other.json()["access"]


def sid(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["sid"])


def assert_only_family_ended(server, family: dict, bystander: str) -> None:
    """The attacked family is gone from the user's sessions; the bystander lives on."""
    assert me(server, bystander).status_code == 200
    listed = {s["id"] for s in sessions(server, bystander)}
    assert sid(bystander) in listed and sid(family["access_token"]) not in listed


def totp_account(server, what: str) -> tuple[str, dict, str, set[str]]:
    """A verified account with TOTP on: email, tokens, the secret, the codes used."""
    email, tokens = account(server, what)
    auth = bearer(tokens["access_token"])
    again = post(f"{server.api}/auth/reauthenticate", {"password": PASSWORD}, headers=auth)
    assert again.status_code == 200, again.text
    offer = get(f"{server.api}/account/authenticators/totp", headers=auth)
    assert offer.status_code == 404, offer.text
    secret = meta(offer)["secret"]
    code = fresh_code(secret, set())
    on = post(f"{server.api}/account/authenticators/totp", {"code": code}, headers=auth)
    assert on.status_code == 200, on.text
    return email, tokens, secret, {code}


def fresh_code(secret: str, used: set[str], left: float = 3) -> str:
    """The current TOTP code once it is not one of ``used`` and its window has ``left``
    seconds to go (so it is still the current one when the server checks it)."""
    totp = pyotp.TOTP(secret)
    deadline = time.monotonic() + 2 * totp.interval + 5
    while time.monotonic() < deadline:
        code = totp.now()
        remaining = totp.interval - time.time() % totp.interval
        if code not in used and remaining >= left:
            return code
        time.sleep(0.25)
    raise AssertionError("no fresh TOTP code in two windows")


def _pending(answer: httpx.Response) -> str | None:
    """The id of the pending stage of an allauth 401, if any."""
    flows = answer.json().get("data", {}).get("flows", [])
    return next((flow["id"] for flow in flows if flow.get("is_pending")), None)


def mfa_pending(server, email: str) -> str:
    """A login by password of a TOTP account: the session token of its pending MFA stage."""
    answer = post(f"{server.api}/auth/login", {"email": email, "password": PASSWORD})
    assert answer.status_code == 401, answer.text
    assert _pending(answer) == "mfa_authenticate"
    assert "access_token" not in meta(answer)
    return meta(answer)["session_token"]


def second_factor(server, session_token: str, code: str) -> httpx.Response:
    return post(
        f"{server.api}/auth/2fa/authenticate",
        {"code": code},
        headers={"X-Session-Token": session_token},
    )


def sessions(server, access: str) -> list[dict]:
    answer = get(f"{server.url}/api/auth/sessions", headers=bearer(access))
    assert answer.status_code == 200, answer.text
    listed: list[dict] = answer.json()
    return listed


def made_since(server, access: str, since: float) -> list[dict]:
    """The user's sessions created at or after ``since``: the suite's other accounts
    servers share the store, and their user ids are ours too."""
    return [
        s
        for s in sessions(server, access)
        if datetime.fromisoformat(s["created_at"]).timestamp() >= since
    ]


def me(server, access: str) -> httpx.Response:
    return get(f"{server.url}/api/auth/me", headers=bearer(access))


def our_refresh(server, refresh: str) -> httpx.Response:
    return post(f"{server.url}/api/auth/refresh", {"refresh": refresh})


def allauth_refresh(server, refresh: str) -> httpx.Response:
    return post(f"{server.api}/tokens/refresh", {"refresh_token": refresh})


def allauth_session(server, access: str) -> httpx.Response:
    return get(f"{server.api}/auth/session", headers=bearer(access))


def assert_refused(answer: httpx.Response, code: str = "token_not_valid") -> None:
    """Our doors' refusal: 401, JSON ``detail`` and ``code``, ``WWW-Authenticate``."""
    assert answer.status_code == 401, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    body = answer.json()
    assert body["code"] == code and body["detail"], body
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def assert_allauth_refused(answer: httpx.Response) -> None:
    """allauth's refusal of a request: a 4xx in its own shape, and no tokens."""
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    body = answer.json()
    assert body["status"] == answer.status_code, body
    assert "access_token" not in (body.get("meta") or {})
    assert "access_token" not in (body.get("data") or {})


def assert_code_refused(answer: httpx.Response) -> None:
    """allauth's refusal of a second factor: 400 ``incorrect_code`` on the code."""
    assert_allauth_refused(answer)
    assert answer.status_code == 400
    assert [(e["code"], e["param"]) for e in answer.json()["errors"]] == [
        ("incorrect_code", "code")
    ]


def assert_not_authenticated(answer: httpx.Response) -> None:
    """allauth's ``GET /auth/session`` of an anonymous request."""
    assert answer.status_code == 401, answer.text
    assert answer.json()["meta"]["is_authenticated"] is False


# 1. A second factor replayed


def test_a_totp_code_replayed_on_a_fresh_login_is_refused(server):
    email, tokens, secret, used = totp_account(server, "totp-replay")
    before = sessions(server, tokens["access_token"])
    first, second = mfa_pending(server, email), mfa_pending(server, email)
    # both uses inside one window, so only the replay rule can refuse the second
    code = fresh_code(secret, used, left=12)
    done = second_factor(server, first, code)
    assert done.status_code == 200, done.text
    winner = meta(done)
    assert set(winner) >= {"access_token", "refresh_token"}

    replay = second_factor(server, second, code)
    assert pyotp.TOTP(secret).now() == code, "the window rolled: the replay proved nothing"
    assert_code_refused(replay)
    # the replaying flow is still pending, not authenticated
    state = get(f"{server.api}/auth/session", headers={"X-Session-Token": second})
    assert state.status_code == 401 and _pending(state) == "mfa_authenticate", state.text
    # exactly one new session: the honest login's
    after = sessions(server, winner["access_token"])
    assert len(after) == len(before) + 1
    assert me(server, winner["access_token"]).status_code == 200


def test_a_totp_code_replayed_at_another_worker_is_refused(server):
    """allauth marks a used code in Django's cache: the demo's is the store, one for every
    worker (LocMemCache, Django's default, let a second worker take the code again)."""
    with AccountsServer("--workers", "2") as workers:
        email, tokens, secret, used = totp_account(workers, "totp-workers")
        before = sessions(workers, tokens["access_token"])
        flows = [mfa_pending(workers, email) for _ in range(6)]
        code = fresh_code(secret, used, left=20)
        answers = []
        for flow in flows:  # a new connection each: the kernel spreads them over both
            with httpx.Client(timeout=TIMEOUT) as fresh:
                answers.append(
                    fresh.post(
                        f"{workers.api}/auth/2fa/authenticate",
                        json={"code": code},
                        headers={"X-Session-Token": flow},
                    )
                )
        assert pyotp.TOTP(secret).now() == code, "the window rolled: the replays proved nothing"
        assert [a.status_code for a in answers] == [200] + [400] * 5, [a.text for a in answers]
        for replay in answers[1:]:
            assert_code_refused(replay)
        winner = meta(answers[0])
        assert len(sessions(workers, winner["access_token"])) == len(before) + 1


def test_clearing_the_cache_keeps_the_sessions(server, member):
    """The cache shares the store's database: clear() deletes its own keys, no FLUSHDB."""
    family, bystander = family_and_bystander(server, member)
    out = server.shell(
        "from django.core.cache import cache\n"
        "cache.set('probe', 1, 60)\n"
        "print(cache.get('probe'), cache.clear(), cache.get('probe'))"
    )
    assert out.strip().splitlines()[-1].split() == ["1", "True", "None"], out
    assert me(server, family["access_token"]).status_code == 200
    assert me(server, bystander).status_code == 200
    assert our_refresh(server, family["refresh_token"]).status_code == 200


def test_a_recovery_code_used_twice_is_refused(server):
    email, tokens, _, _ = totp_account(server, "recovery-replay")
    auth = bearer(tokens["access_token"])
    listed = get(f"{server.api}/account/authenticators/recovery-codes", headers=auth)
    assert listed.status_code == 200, listed.text
    codes = listed.json()["data"]["unused_codes"]
    spent = codes[0]
    before = sessions(server, tokens["access_token"])
    first, second = mfa_pending(server, email), mfa_pending(server, email)

    done = second_factor(server, first, spent)
    assert done.status_code == 200, done.text
    winner = meta(done)
    replay = second_factor(server, second, spent)
    assert_code_refused(replay)

    after = sessions(server, winner["access_token"])
    assert len(after) == len(before) + 1
    left = get(f"{server.api}/account/authenticators/recovery-codes", headers=auth)
    assert left.status_code == 200, left.text
    assert left.json()["data"]["unused_codes"] == codes[1:]
    # an unspent code still opens the refused flow: it was refused for the replay only
    other = second_factor(server, second, codes[1])
    assert other.status_code == 200, other.text
    assert len(sessions(server, winner["access_token"])) == len(before) + 2


# 2. A pending flow's handle is no token


def _handle_opens_nothing(server, handle: str) -> None:
    assert_refused(me(server, handle))
    assert_not_authenticated(allauth_session(server, handle))
    assert_refused(our_refresh(server, handle))


def test_a_signup_flow_handle_as_bearer_opens_nothing(server):
    since = time.time()
    email = _email("signup-handle")
    handle = signup(server, email)
    _handle_opens_nothing(server, handle)
    # the flow itself is intact, and ends in the one session its verification makes
    state = get(f"{server.api}/auth/session", headers={"X-Session-Token": handle})
    assert state.status_code == 401 and _pending(state) == "verify_email", state.text
    tokens = verify(server, email, handle)
    made = made_since(server, tokens["access_token"], since)
    assert [s["id"] for s in made] == [sid(tokens["access_token"])]


def test_an_mfa_flow_handle_as_bearer_opens_nothing(server):
    email, tokens, _, _ = totp_account(server, "mfa-handle")
    before = sessions(server, tokens["access_token"])
    handle = mfa_pending(server, email)
    _handle_opens_nothing(server, handle)
    assert sessions(server, tokens["access_token"]) == before
    state = get(f"{server.api}/auth/session", headers={"X-Session-Token": handle})
    assert state.status_code == 401 and _pending(state) == "mfa_authenticate", state.text


# 3. A password alone at our door


def test_an_unverified_account_is_refused_at_our_login(server):
    since = time.time()
    email = _email("unverified")
    handle = signup(server, email)
    refused = post(f"{server.url}/api/auth/login", {"username": email, "password": PASSWORD})
    assert_refused(refused, "email_not_verified")
    assert "access" not in refused.json()
    # following the link makes the account's first and only session
    tokens = verify(server, email, handle)
    made = made_since(server, tokens["access_token"], since)
    assert [s["id"] for s in made] == [sid(tokens["access_token"])]
    ok = post(f"{server.url}/api/auth/login", {"username": email, "password": PASSWORD})
    assert ok.status_code == 200, ok.text
    assert len(made_since(server, ok.json()["access"], since)) == 2


def test_a_totp_account_with_its_password_alone_is_refused_at_our_login(server):
    email, tokens, _, _ = totp_account(server, "password-alone")
    before = sessions(server, tokens["access_token"])
    refused = post(f"{server.url}/api/auth/login", {"username": email, "password": PASSWORD})
    assert_refused(refused, "mfa_required")
    assert "access" not in refused.json()
    assert sessions(server, tokens["access_token"]) == before
    # a wrong password is told apart from neither: no hint that it was right
    wrong = post(f"{server.url}/api/auth/login", {"username": email, "password": "nope-" * 3})
    assert_refused(wrong, "no_active_account")


def test_an_account_throttled_at_our_door_is_a_429_at_allauths_login(server):
    """Wrong passwords at our door use up the allowance that allauth's login shares: its
    owner's right password there is told to wait (429), not that it is wrong, and opens
    nothing."""
    since = time.time()
    email, tokens = account(server, "throttled")
    for _ in range(5):
        wrong = post(f"{server.url}/api/auth/login", {"username": email, "password": "nope" * 4})
        assert_refused(wrong, "no_active_account")
    locked = post(f"{server.url}/api/auth/login", {"username": email, "password": PASSWORD})
    assert locked.status_code == 429, locked.text
    answer = post(f"{server.api}/auth/login", {"email": email, "password": PASSWORD})
    assert answer.status_code == 429, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json()["code"] == "throttled" and answer.json()["detail"]
    assert int(answer.headers["Retry-After"]) > 0
    assert "access_token" not in (answer.json().get("meta") or {})
    made = made_since(server, tokens["access_token"], since)
    assert [s["id"] for s in made] == [sid(tokens["access_token"])]


# 4. A spent refresh token replayed at the other door


def test_a_refresh_spent_at_our_door_replayed_at_allauths_ends_the_family(server, member):
    family, bystander = family_and_bystander(server, member)
    spent = family["refresh_token"]
    nxt = our_refresh(server, spent)
    assert nxt.status_code == 200, nxt.text
    successor = nxt.json()

    assert_allauth_refused(allauth_refresh(server, spent))
    assert_refused(our_refresh(server, successor["refresh"]))
    assert_refused(me(server, successor["access"]))
    assert_refused(me(server, family["access_token"]))
    assert_not_authenticated(allauth_session(server, successor["access"]))
    assert_only_family_ended(server, family, bystander)


def test_a_refresh_spent_at_allauths_door_replayed_at_ours_ends_the_family(server, member):
    family, bystander = family_and_bystander(server, member)
    spent = family["refresh_token"]
    nxt = allauth_refresh(server, spent)
    assert nxt.status_code == 200, nxt.text
    successor = nxt.json()["data"]
    assert me(server, successor["access_token"]).status_code == 200

    assert_refused(our_refresh(server, spent))
    assert_allauth_refused(allauth_refresh(server, successor["refresh_token"]))
    assert_refused(me(server, successor["access_token"]))
    assert_not_authenticated(allauth_session(server, successor["access_token"]))
    assert_only_family_ended(server, family, bystander)


# 5. Logout at one door, the tokens at the other


def test_allauths_logout_ends_our_tokens(server, member):
    family, bystander = family_and_bystander(server, member)
    out = httpx.delete(
        f"{server.api}/auth/session", headers=bearer(family["access_token"]), timeout=TIMEOUT
    )
    assert out.status_code == 401, out.text
    assert out.json()["meta"]["is_authenticated"] is False

    assert_refused(me(server, family["access_token"]))
    assert_refused(our_refresh(server, family["refresh_token"]))
    assert_allauth_refused(allauth_refresh(server, family["refresh_token"]))
    assert_not_authenticated(allauth_session(server, family["access_token"]))
    assert_only_family_ended(server, family, bystander)


def test_our_logout_ends_allauths_view_of_the_session(server, member):
    family, bystander = family_and_bystander(server, member)
    assert allauth_session(server, family["access_token"]).status_code == 200
    out = post(f"{server.url}/api/auth/logout", {"refresh": family["refresh_token"]})
    assert out.status_code == 204, out.text

    assert_not_authenticated(allauth_session(server, family["access_token"]))
    assert_allauth_refused(allauth_refresh(server, family["refresh_token"]))
    assert_refused(me(server, family["access_token"]))
    handle = get(f"{server.api}/auth/session", headers={"X-Session-Token": family["session_token"]})
    assert handle.status_code in (401, 410), handle.text
    assert_only_family_ended(server, family, bystander)


# 6. Racing refreshes across the doors


def test_concurrent_refreshes_at_both_doors_exactly_one_wins(server, member):
    family, bystander = family_and_bystander(server, member)
    refresh = family["refresh_token"]
    doors = ["ours", "allauth"] * 4
    start = threading.Barrier(len(doors))

    def one(door: str) -> tuple[str, httpx.Response]:
        with httpx.Client(timeout=TIMEOUT) as client:
            client.get(f"{server.url}/health")  # connected before the barrier
            start.wait(timeout=30)
            if door == "ours":
                return door, client.post(
                    f"{server.url}/api/auth/refresh", json={"refresh": refresh}
                )
            return door, client.post(
                f"{server.api}/tokens/refresh", json={"refresh_token": refresh}
            )

    with ThreadPoolExecutor(len(doors)) as pool:
        answers = list(pool.map(one, doors))
    won = [(door, answer) for door, answer in answers if answer.status_code == 200]
    assert len(won) == 1, [(door, a.status_code, a.text) for door, a in answers]
    for door, answer in answers:
        if answer.status_code == 200:
            continue
        if door == "ours":
            assert_refused(answer)
        else:
            assert_allauth_refused(answer)
    door, answer = won[0]
    pair = answer.json() if door == "ours" else answer.json()["data"]
    access = pair["access"] if door == "ours" else pair["access_token"]
    successor = pair["refresh"] if door == "ours" else pair["refresh_token"]
    # the losers presented a spent token: reuse, so the family ends, the winner's pair too
    # (as tests/test_rotation.py asserts of one door)
    assert_refused(me(server, access))
    assert_refused(our_refresh(server, successor))
    assert_refused(me(server, family["access_token"]))
    assert_only_family_ended(server, family, bystander)


# 7. The store stalled


def _assert_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    body = answer.json()
    assert body["code"] == "service_unavailable" and body["detail"], body
    assert int(answer.headers["Retry-After"]) > 0


def test_a_stalled_store_is_a_503_at_allauths_doors_then_they_work(server):
    redis = server.store  # the server's own valkey-server
    assert redis is not None
    email, tokens = account(server, "stalled")
    spare = our_refresh(server, tokens["refresh_token"])
    assert spare.status_code == 200, spare.text
    pair = spare.json()
    assert redis.process is not None
    os.kill(redis.process.pid, signal.SIGSTOP)
    try:
        _assert_unavailable(
            post(f"{server.api}/auth/login", {"email": email, "password": PASSWORD})
        )
        _assert_unavailable(allauth_session(server, pair["access"]))
        _assert_unavailable(allauth_refresh(server, pair["refresh"]))
    finally:
        os.kill(redis.process.pid, signal.SIGCONT)
    # a second factor while the store (the cache of used codes) is stalled: 503, not taken
    totp_email, totp_tokens, secret, used = totp_account(server, "stalled-totp")
    before = sessions(server, totp_tokens["access_token"])
    flow = mfa_pending(server, totp_email)
    code = fresh_code(secret, used, left=15)
    os.kill(redis.process.pid, signal.SIGSTOP)
    try:
        _assert_unavailable(second_factor(server, flow, code))
    finally:
        os.kill(redis.process.pid, signal.SIGCONT)

    again = post(f"{server.api}/auth/login", {"email": email, "password": PASSWORD})
    assert again.status_code == 200, again.text
    assert me(server, meta(again)["access_token"]).status_code == 200
    assert allauth_session(server, pair["access"]).status_code == 200
    nxt = allauth_refresh(server, pair["refresh"])
    assert nxt.status_code == 200, nxt.text
    assert me(server, nxt.json()["data"]["access_token"]).status_code == 200
    assert sessions(server, totp_tokens["access_token"]) == before

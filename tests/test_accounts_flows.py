"""allauth's headless flows end to end, against live accounts servers: what each does to
this service's sessions and tokens (API.md, "Accounts").

Password reset and change end every session at both doors; ``amr`` says how the user
authenticated (password, TOTP, recovery code, a step-up within a session) and survives
rotation at both doors and introspection; our login takes the address of a signed-up
account; allauth's logins are sessions of ours (listed, capped, minted once); and
allauth's failed passwords count toward our login throttle.

Each server has a Redis of its own: user ids restart at 1 on each database, and the
store's keys are per user id.
"""

from __future__ import annotations

import base64
import json
import time

import httpx
import pyotp
import pytest
import redis

from authapi.keyspace import session_key
from tests.accounts_server import PASSWORD, AccountsServer, meta

NEW_PASSWORD = PASSWORD + "-renewed"
CLIENT = ("flows-rs", "flows-rs-secret")


def _serve(env: dict[str, str]):
    with AccountsServer(env=env) as live:  # each with a valkey-server of its own
        yield live


@pytest.fixture(scope="module")
def server():
    yield from _serve({"AUTHAPI_RESOURCE_CLIENTS": ":".join(CLIENT)})


@pytest.fixture(scope="module")
def tight():
    """Two sessions per user, three failed logins a minute per (address, username)."""
    yield from _serve({"AUTHAPI_MAX_SESSIONS_PER_USER": "2", "AUTHAPI_LOGIN_RATE": "3/min"})


# --- helpers --------------------------------------------------------------------------


def bearer(access):
    return {"Authorization": f"Bearer {access}"}


def claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def amr(token):
    return claims(token)["amr"]


def pair_of(answer):
    """(access, refresh) of an allauth answer (``meta``) or of one of our doors."""
    body = answer.json()
    if "access" in body:
        return body["access"], body["refresh"]
    if "access_token" in body.get("data", {}):
        return body["data"]["access_token"], body["data"]["refresh_token"]
    return meta(answer)["access_token"], meta(answer)["refresh_token"]


def signup(server, email):
    """A verified account made by signup; the pair of the verification flow's session."""
    found = server.signup(email)
    return found["access_token"], found["refresh_token"]


def allauth_login(server, email, password=PASSWORD, **kwargs):
    return httpx.post(
        f"{server.api}/auth/login", json={"email": email, "password": password}, **kwargs
    )


def our_login(server, username, password=PASSWORD, **kwargs):
    return httpx.post(
        f"{server.url}/api/auth/login",
        json={"username": username, "password": password},
        **kwargs,
    )


def logged_in(answer):
    assert answer.status_code == 200, answer.text
    return pair_of(answer)


def me(server, access):
    return httpx.get(f"{server.url}/api/auth/me", headers=bearer(access))


def refresh_ours(server, refresh):
    return httpx.post(f"{server.url}/api/auth/refresh", json={"refresh": refresh})


def refresh_allauth(server, refresh):
    return httpx.post(f"{server.api}/tokens/refresh", json={"refresh_token": refresh})


def is_live(server, refresh):
    """Whether a refresh token is current, without spending it (``/api/auth/verify``)."""
    answer = httpx.post(f"{server.url}/api/auth/verify", json={"token": refresh})
    assert answer.status_code in (200, 401), answer.text
    return answer.status_code == 200


def sessions(server, access):
    answer = httpx.get(f"{server.url}/api/auth/sessions", headers=bearer(access))
    assert answer.status_code == 200, answer.text
    return answer.json()


def assert_refused_json(answer, status, code):
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert body["code"] == code and body["detail"], body


def assert_dead(server, pair):
    """Access refused at /me; refresh refused at both doors (allauth's answers 400)."""
    access, refresh = pair
    assert_refused_json(me(server, access), 401, "token_not_valid")
    assert refresh_ours(server, refresh).status_code == 401
    theirs = refresh_allauth(server, refresh)
    assert theirs.status_code == 400, theirs.text
    assert "access_token" not in theirs.json().get("data", {})
    assert not is_live(server, refresh)


def assert_alive(server, pair):
    access, refresh = pair
    assert me(server, access).status_code == 200
    assert is_live(server, refresh)


def totp_code(secret):
    """The current code, not one about to expire (allauth allows no tolerance)."""
    if 30 - time.time() % 30 < 2:
        time.sleep(30 - time.time() % 30 + 0.1)
    return pyotp.TOTP(secret).now()


# --- 1. password reset by mail ----------------------------------------------------------


def test_password_reset_ends_every_session_at_both_doors(server):
    email = "reset@example.com"
    signup(server, email)
    theirs = logged_in(allauth_login(server, email))
    ours = logged_in(our_login(server, email))  # the address as the username

    requested = httpx.post(f"{server.api}/auth/password/request", json={"email": email})
    assert requested.status_code == 200, requested.text
    for pair in (theirs, ours):  # asking for a reset ends nothing
        assert_alive(server, pair)
    key = server.link_key(server.wait_for_mail(email, count=2), "password/reset/key")

    check = f"{server.api}/auth/password/reset"
    wrong = httpx.get(check, headers={"X-Password-Reset-Key": key + "x"})
    assert wrong.status_code == 400, wrong.text
    valid = httpx.get(check, headers={"X-Password-Reset-Key": key})
    assert valid.status_code == 200, valid.text
    assert valid.json()["data"]["user"]["email"] == email

    done = httpx.post(check, json={"key": key, "password": NEW_PASSWORD})
    assert done.status_code == 401, done.text  # reset, not logged in: no pair
    assert "access_token" not in meta(done) and "refresh_token" not in meta(done)

    for pair in (theirs, ours):
        assert_dead(server, pair)
    old = allauth_login(server, email)
    assert old.status_code == 400 and "access_token" not in meta(old), old.text
    assert_refused_json(our_login(server, email), 401, "no_active_account")
    assert_alive(server, logged_in(allauth_login(server, email, NEW_PASSWORD)))
    assert_alive(server, logged_in(our_login(server, email, NEW_PASSWORD)))

    again = httpx.post(check, json={"key": key, "password": PASSWORD + "-third"})
    assert again.status_code == 400, again.text
    assert httpx.get(check, headers={"X-Password-Reset-Key": key}).status_code == 400
    assert_refused_json(our_login(server, email, PASSWORD + "-third"), 401, "no_active_account")
    assert_alive(server, logged_in(our_login(server, email, NEW_PASSWORD)))


# --- 2. password change through allauth -------------------------------------------------


def test_password_change_ends_every_session_the_flows_own_too(server):
    email = "change@example.com"
    verified = signup(server, email)
    other = logged_in(allauth_login(server, email))
    ours = logged_in(our_login(server, email))
    flow = logged_in(allauth_login(server, email))
    url = f"{server.api}/account/password/change"

    wrong = httpx.post(
        url,
        json={"current_password": PASSWORD + "-not", "new_password": NEW_PASSWORD},
        headers=bearer(flow[0]),
    )
    assert wrong.status_code == 400, wrong.text
    for pair in (verified, other, ours, flow):  # a refused change ends nothing
        assert_alive(server, pair)

    changed = httpx.post(
        url,
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(flow[0]),
    )
    assert changed.status_code == 200, changed.text
    # allauth cycled the flow's Django session key: it hands out the new key, no new pair
    handle = meta(changed)["session_token"]
    assert "access_token" not in meta(changed) and "refresh_token" not in meta(changed)

    # API.md: a changed password ends every session of the user, the flow's own included
    for pair in (verified, other, ours, flow):
        assert_dead(server, pair)
    session = f"{server.api}/auth/session"
    assert httpx.get(session, headers=bearer(flow[0])).status_code == 401
    # the cycled key is still bound to the ended session: it opens nothing, and is gone
    for _ in range(2):
        assert httpx.get(session, headers={"X-Session-Token": handle}).status_code == 410
    rows = "from django.contrib.sessions.models import Session as S; print(S.objects.filter"
    out = server.shell(f"{rows}(session_key={handle!r}).count())")
    assert out.strip().splitlines()[-1] == "0"

    assert_refused_json(our_login(server, email), 401, "no_active_account")
    assert allauth_login(server, email).status_code == 400
    fresh = logged_in(allauth_login(server, email, NEW_PASSWORD))
    assert httpx.get(session, headers=bearer(fresh[0])).status_code == 200
    assert [s["current"] for s in sessions(server, fresh[0])] == [True]
    assert_alive(server, logged_in(our_login(server, email, NEW_PASSWORD)))


# --- 4. our login takes the address of a signed-up account ------------------------------


def test_our_login_takes_the_address_of_a_signed_up_account_in_any_case(server):
    email = "case.user@example.com"
    signup(server, email)
    access, _ = logged_in(our_login(server, email))
    profile = me(server, access).json()
    assert profile["email"] == email
    assert profile["username"] != email  # signup generated one: the address is no username

    # The address is matched as allauth matches it, whatever its case, at both doors.
    upper, _ = logged_in(our_login(server, email.upper()))
    assert me(server, upper).json()["id"] == profile["id"]
    assert amr(upper) == ["pwd"]
    theirs, _ = logged_in(allauth_login(server, email.upper()))
    assert me(server, theirs).json()["id"] == profile["id"]
    assert logged_in(our_login(server, profile["username"]))  # the generated name too

    for name in (email, email.upper()):  # refusals: a clean 401 JSON, never a 500
        assert_refused_json(our_login(server, name, PASSWORD + "-not"), 401, "no_active_account")
    assert_refused_json(our_login(server, "nobody@example.com"), 401, "no_active_account")
    assert_refused_json(our_login(server, "CASE.USER@EXAMPLE.ORG"), 401, "no_active_account")


def test_our_login_refuses_an_address_not_yet_verified(server):
    email = "unverified@example.com"
    pending = httpx.post(f"{server.api}/auth/signup", json={"email": email, "password": PASSWORD})
    assert pending.status_code == 401, pending.text
    server.wait_for_mail(email)
    assert_refused_json(our_login(server, email), 401, "email_not_verified")
    assert_refused_json(our_login(server, email, PASSWORD + "-not"), 401, "no_active_account")


# --- 3. amr -----------------------------------------------------------------------------


def introspect(server, token, auth=CLIENT):
    return httpx.post(f"{server.url}/api/auth/introspect", data={"token": token}, auth=auth)


def second_factor(server, email, code):
    """allauth's login of an account with TOTP: pending, then the code."""
    pending = allauth_login(server, email)
    assert pending.status_code == 401, pending.text
    assert "access_token" not in meta(pending)
    flows = {f["id"]: f for f in pending.json()["data"]["flows"]}
    assert flows["mfa_authenticate"]["is_pending"], flows
    return httpx.post(
        f"{server.api}/auth/2fa/authenticate",
        json={"code": code},
        headers={"X-Session-Token": meta(pending)["session_token"]},
    )


def session_amr(server, token):
    """The ``amr`` field the store keeps for the token's session (the next refresh's)."""
    found = claims(token)
    with redis.Redis.from_url(server.env["REDIS_URL"], decode_responses=True) as store:
        return store.hget(session_key(found["user_id"], found["sid"]), "amr")


def refreshed_at_both_doors(server, pair):
    """The pair after a refresh at ours, then at allauth's: each access token's amr."""
    ours = refresh_ours(server, pair[1])
    assert ours.status_code == 200, ours.text
    theirs = refresh_allauth(server, pair_of(ours)[1])
    assert theirs.status_code == 200, theirs.text
    return amr(pair_of(ours)[0]), amr(pair_of(theirs)[0]), pair_of(theirs)


def test_amr_of_each_way_in_kept_across_refresh_and_raised_by_a_step_up(server):
    email = "factors@example.com"
    signup(server, email)
    door = logged_in(our_login(server, email))
    assert amr(door[0]) == ["pwd"]
    *kept, door = refreshed_at_both_doors(server, door)
    assert kept == [["pwd"], ["pwd"]]
    flow = logged_in(allauth_login(server, email))
    assert amr(flow[0]) == ["pwd"]
    *kept, flow = refreshed_at_both_doors(server, flow)
    assert kept == [["pwd"], ["pwd"]]

    # Step-up by password: _step writes the session's records, password twice: still pwd.
    app = httpx.Client(base_url=server.api, headers=bearer(flow[0]))
    wrong = app.post("/auth/reauthenticate", json={"password": PASSWORD + "-not"})
    assert wrong.status_code == 400, wrong.text
    again = app.post("/auth/reauthenticate", json={"password": PASSWORD})
    assert again.status_code == 200, again.text
    assert "access_token" not in meta(again)  # a step-up is no new session
    assert session_amr(server, flow[0]) == "pwd"
    *kept, flow = refreshed_at_both_doors(server, flow)
    assert kept == [["pwd"], ["pwd"]]

    # TOTP, set up within this session; allauth makes recovery codes with it.
    app.headers.update(bearer(flow[0]))
    setup = app.get("/account/authenticators/totp")
    assert setup.status_code == 404, setup.text
    secret = meta(setup)["secret"]
    bad = app.post("/account/authenticators/totp", json={"code": "not-a-code"})
    assert bad.status_code == 400, bad.text
    on = app.post("/account/authenticators/totp", json={"code": totp_code(secret)})
    assert on.status_code == 200, on.text
    listed = app.get("/account/authenticators/recovery-codes")
    assert listed.status_code == 200, listed.text
    codes = listed.json()["data"]["unused_codes"]
    assert len(codes) >= 3
    assert_refused_json(our_login(server, email), 401, "mfa_required")  # password alone

    # Step-up by a second factor within the session: the access token in hand is as it
    # was; the next refresh, at either door, carries what _step wrote: "pwd otp mfa".
    step = app.post("/auth/2fa/reauthenticate", json={"code": codes[0]})
    assert step.status_code == 200, step.text
    assert session_amr(server, flow[0]) == "pwd otp mfa"
    assert session_amr(server, door[0]) == "pwd"
    assert amr(flow[0]) == ["pwd"]
    mfa = ["pwd", "otp", "mfa"]
    *raised, flow = refreshed_at_both_doors(server, flow)
    assert raised == [mfa, mfa]
    assert refreshed_at_both_doors(server, door)[:2] == (["pwd"], ["pwd"])  # not another
    described = introspect(server, flow[0])
    assert described.status_code == 200, described.text
    assert described.json()["active"] is True and described.json()["amr"] == mfa
    app.close()

    # Logins with the second factor: TOTP, a recovery code; each code works once.
    count = len(sessions(server, flow[0]))
    right = totp_code(secret)
    wrong = second_factor(server, email, f"{(int(right) + 1) % 10**6:06d}")
    assert wrong.status_code == 400 and "access_token" not in meta(wrong), wrong.text
    assert len(sessions(server, flow[0])) == count  # a pending stage mints nothing
    totp = logged_in(second_factor(server, email, totp_code(secret)))
    assert len(sessions(server, flow[0])) == count + 1  # the last stage mints one
    assert amr(totp[0]) == mfa
    assert refreshed_at_both_doors(server, totp)[:2] == (mfa, mfa)
    spent = second_factor(server, email, codes[0])  # used by the step-up
    assert spent.status_code == 400 and "access_token" not in meta(spent), spent.text
    recovery = logged_in(second_factor(server, email, codes[1]))
    assert amr(recovery[0]) == mfa
    *kept, recovery = refreshed_at_both_doors(server, recovery)
    assert kept == [mfa, mfa]

    described = introspect(server, recovery[0]).json()
    assert described["active"] is True and described["amr"] == mfa
    assert described["sid"] == claims(recovery[0])["sid"]
    refused = introspect(server, recovery[0], auth=(CLIENT[0], "wrong"))
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
    out = httpx.delete(f"{server.api}/auth/session", headers=bearer(recovery[0]))
    assert out.status_code == 401, out.text  # allauth's logout: no longer authenticated
    assert introspect(server, recovery[0]).json() == {"active": False}


# --- 5. allauth's logins are sessions of ours -------------------------------------------


def sid(pair):
    return claims(pair[0])["sid"]


def test_an_allauth_login_is_one_session_listed_with_its_user_agent(server):
    email = "listed@example.com"
    verified = signup(server, email)
    assert [s["id"] for s in sessions(server, verified[0])] == [sid(verified)]
    assert amr(verified[0]) == ["pwd"]  # verification records no step: signup's password
    agent = "flows-suite/1.0 (allauth login)"
    mine = logged_in(allauth_login(server, email, headers={"User-Agent": agent}))
    listed = {s["id"]: s for s in sessions(server, mine[0])}
    assert set(listed) == {sid(verified), sid(mine)}  # one login, exactly one session
    assert listed[sid(mine)]["current"] is True
    assert listed[sid(mine)]["user_agent"] == agent
    assert listed[sid(mine)]["ip"] == "127.0.0.1"
    assert listed[sid(verified)]["current"] is False
    assert listed[sid(verified)]["user_agent"].startswith("python-httpx/")

    ours = logged_in(our_login(server, email, headers={"User-Agent": "flows-suite/2.0"}))
    listed = {s["id"]: s for s in sessions(server, ours[0])}
    assert set(listed) == {sid(verified), sid(mine), sid(ours)}
    assert listed[sid(ours)]["user_agent"] == "flows-suite/2.0"
    assert listed[sid(mine)]["user_agent"] == agent

    # A refresh records its client, at allauth's door as at ours.
    url = f"{server.api}/tokens/refresh"
    moved = httpx.post(url, json={"refresh_token": mine[1]}, headers={"User-Agent": "moved/3"})
    assert moved.status_code == 200, moved.text
    listed = {s["id"]: s for s in sessions(server, ours[0])}
    assert listed[sid(mine)]["user_agent"] == "moved/3"
    assert listed[sid(verified)]["user_agent"].startswith("python-httpx/")
    back = refresh_ours(server, pair_of(moved)[1])
    assert back.status_code == 200, back.text
    listed = {s["id"]: s for s in sessions(server, ours[0])}
    assert listed[sid(mine)]["user_agent"].startswith("python-httpx/")


def test_the_session_cap_applies_to_allauth_logins(tight):
    email = "capped@example.com"
    verified = signup(tight, email)
    answer = allauth_login(tight, email)
    first, handle = logged_in(answer), meta(answer)["session_token"]
    assert {s["id"] for s in sessions(tight, first[0])} == {sid(verified), sid(first)}
    session = f"{tight.api}/auth/session"
    assert httpx.get(session, headers={"X-Session-Token": handle}).status_code == 200

    second = logged_in(allauth_login(tight, email))  # past the cap: the oldest ends
    assert_dead(tight, verified)
    assert {s["id"] for s in sessions(tight, second[0])} == {sid(first), sid(second)}
    third = logged_in(allauth_login(tight, email))
    assert_dead(tight, first)
    assert httpx.get(session, headers={"X-Session-Token": handle}).status_code == 410
    assert {s["id"] for s in sessions(tight, third[0])} == {sid(second), sid(third)}
    for pair in (second, third):
        assert_alive(tight, pair)

    ours = logged_in(our_login(tight, email))  # both doors count against one cap
    assert_dead(tight, second)
    assert {s["id"] for s in sessions(tight, ours[0])} == {sid(third), sid(ours)}
    assert_alive(tight, third)


# --- 6. one login throttle for both doors -----------------------------------------------


def assert_throttled(answer):
    assert_refused_json(answer, 429, "throttled")
    assert int(answer.headers["retry-after"]) > 0
    assert "access" not in answer.json()


def test_failed_passwords_at_allauth_count_toward_our_throttle(tight):
    email = "guessed@example.com"
    signup(tight, email)
    # AUTHAPI_LOGIN_RATE=3/min per (address, username), the username in any case
    for variant in (email, email.upper(), "Guessed@Example.COM"):
        wrong = allauth_login(tight, variant, PASSWORD + "-guess")
        assert wrong.status_code == 400 and "access_token" not in meta(wrong), wrong.text
    assert_throttled(our_login(tight, email))  # the right password: refused all the same
    assert_throttled(our_login(tight, email.upper()))
    # and at allauth's door: our 429, not allauth's "wrong password" for the right one
    assert_throttled(allauth_login(tight, email))

    bystander = "bystander@example.com"  # another username from the same address
    signup(tight, bystander)
    assert_alive(tight, logged_in(our_login(tight, bystander)))
    assert_alive(tight, logged_in(allauth_login(tight, bystander)))


def test_failed_passwords_at_our_door_lock_allauth_login_too(tight):
    email = "door@example.com"
    signup(tight, email)
    for _ in range(3):
        assert_refused_json(our_login(tight, email, PASSWORD + "-guess"), 401, "no_active_account")
    assert_throttled(our_login(tight, email))
    assert_throttled(allauth_login(tight, email))  # the right password, at allauth's door


def test_failed_passwords_at_allauth_reauthentication_count_too(tight):
    email = "stepper@example.com"
    signup(tight, email)
    access, _ = logged_in(allauth_login(tight, email))
    url = f"{tight.api}/auth/reauthenticate"
    for _ in range(3):
        wrong = httpx.post(url, json={"password": PASSWORD + "-guess"}, headers=bearer(access))
        assert wrong.status_code == 400, wrong.text
    assert_throttled(our_login(tight, email))
    right = httpx.post(url, json={"password": PASSWORD}, headers=bearer(access))
    assert right.status_code == 400, right.text  # the right one too, while throttled
    assert me(tight, access).status_code == 200  # live sessions are untouched

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

from tests.accounts_server import PASSWORD, AccountsServer, meta
from tests.redis_server import RedisServer

NEW_PASSWORD = PASSWORD + "-renewed"
CLIENT = ("flows-rs", "flows-rs-secret")


def _serve(env: dict[str, str]):
    store = RedisServer()
    store.start()
    try:
        with AccountsServer(env={"REDIS_URL": store.url, **env}) as live:
            yield live
    finally:
        store.stop()


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
    with httpx.Client(base_url=server.api) as client:
        pending = client.post("/auth/signup", json={"email": email, "password": PASSWORD})
        assert pending.status_code == 401, pending.text
        key = server.link_key(server.wait_for_mail(email), "verify-email")
        done = client.post(
            "/auth/email/verify",
            json={"key": key},
            headers={"X-Session-Token": meta(pending)["session_token"]},
        )
    assert done.status_code == 200, done.text
    return pair_of(done)


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

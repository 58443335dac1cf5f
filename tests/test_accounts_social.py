"""Social login (allauth's OpenID Connect provider, the token flow) ends in our sessions.

A real provider runs in its own process (tests/oidc_provider.py: discovery document and
JWKS over HTTP on 127.0.0.1); the demo with accounts on fetches both, as it would from any
provider, and verifies the id_tokens the test mints with that provider's key. The Social
application is made as the README says (provider "openid_connect", its ``server_url`` in
the settings), inside the demo's Django.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import time

import httpx
import jwt
import pyotp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.accounts_server import PASSWORD, AccountsServer, meta
from tests.oidc_provider import OIDCProvider, new_key

PROVIDER = "testidp"
CLIENT_ID = "authapi-tests-client"
TIMEOUT = httpx.Timeout(30)
RESOURCE_CLIENT = ("introspector", "introspector-secret-of-the-tests")

SOCIAL_APP = """
from allauth.socialaccount.models import SocialApp
SocialApp.objects.create(
    provider="openid_connect", provider_id={provider!r}, name="Test IdP",
    client_id={client_id!r}, secret="s3cret", settings={{"server_url": {url!r}}},
)
"""

STATE = """
import json
from django.contrib.auth import get_user_model
from allauth.socialaccount.models import SocialAccount
users = {{u.email: [u.pk, u.has_usable_password()] for u in get_user_model().objects.all()}}
accounts = {{a.uid: a.user_id for a in SocialAccount.objects.filter(provider={provider!r})}}
emails = [u.email for u in get_user_model().objects.all()]
print(json.dumps({{"users": users, "accounts": accounts, "emails": emails}}))
"""


@pytest.fixture(scope="module")
def idp():
    with OIDCProvider() as provider:
        yield provider


@pytest.fixture(scope="module")
def server(idp):
    with AccountsServer(env={"AUTHAPI_RESOURCE_CLIENTS": ":".join(RESOURCE_CLIENT)}) as live:
        live.shell(SOCIAL_APP.format(provider=PROVIDER, client_id=CLIENT_ID, url=idp.issuer))
        yield live


def state(server):
    """Every user (email: [pk, has a usable password]; and each address, as often as it is
    a user's) and social account (sub: user pk)."""
    out = server.shell(STATE.format(provider=PROVIDER))
    return json.loads(out.strip().splitlines()[-1])


def social_login(server, id_token, provider=PROVIDER, client_id=CLIENT_ID, **headers):
    body = {
        "provider": provider,
        "process": "login",
        "token": {"client_id": client_id, "id_token": id_token},
    }
    return httpx.post(
        f"{server.api}/auth/provider/token", json=body, headers=headers, timeout=TIMEOUT
    )


def claims_for(sub, **extra):
    return {
        "sub": sub,
        "aud": CLIENT_ID,
        "email": f"{sub}@idp.example.com",
        "email_verified": True,
        **extra,
    }


def logged_in(server, idp, sub):
    """A social login of ``sub`` that ends in our tokens: allauth's meta."""
    answer = social_login(server, idp.id_token(**claims_for(sub)))
    assert answer.status_code == 200, answer.text
    tokens = meta(answer)
    assert tokens["access_token"] and tokens["refresh_token"], tokens
    return tokens


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def get(server, path, access):
    return httpx.get(f"{server.url}{path}", headers=bearer(access), timeout=TIMEOUT)


def claims_of(server, token):
    """The claims of a live token of ours, as the service's introspection reads them."""
    answer = httpx.post(
        f"{server.url}/api/auth/introspect",
        data={"token": token},
        auth=RESOURCE_CLIENT,
        timeout=TIMEOUT,
    )
    assert answer.status_code == 200, answer.text
    claims = answer.json()
    assert claims["active"] is True, claims
    return claims


def session_ids(server, access):
    answer = get(server, "/api/auth/sessions", access)
    assert answer.status_code == 200, answer.text
    return [s["id"] for s in answer.json()]


def test_valid_id_token_ends_in_our_tokens_with_amr_fed(server, idp):
    sub = "alice-sub"
    tokens = logged_in(server, idp, sub)
    me = get(server, "/api/auth/me", tokens["access_token"])
    assert me.status_code == 200, me.text
    assert me.json()["email"] == f"{sub}@idp.example.com"
    claims = claims_of(server, tokens["access_token"])
    assert claims["amr"] == ["fed"]
    assert str(claims["user_id"]) == str(me.json()["id"])
    assert session_ids(server, tokens["access_token"]) == [claims["sid"]]
    # allauth fetched the provider's discovery document and keys: the signature was checked
    asked = httpx.get(f"{idp.issuer}/_requests", timeout=TIMEOUT).json()
    assert {"/.well-known/openid-configuration", "/jwks"} <= set(asked)
    # allauth's own view of the login: our access token opens it, its user is ours
    session = get(server, "/_allauth/app/v1/auth/session", tokens["access_token"])
    assert session.status_code == 200, session.text
    assert session.json()["data"]["user"]["email"] == f"{sub}@idp.example.com"
    found = state(server)
    assert found["accounts"][sub] == me.json()["id"]
    assert found["users"][f"{sub}@idp.example.com"] == [me.json()["id"], False]


def test_amr_fed_is_kept_across_both_refresh_doors(server, idp):
    tokens = logged_in(server, idp, "bob-sub")
    sid = claims_of(server, tokens["access_token"])["sid"]
    ours = httpx.post(
        f"{server.url}/api/auth/refresh", json={"refresh": tokens["refresh_token"]}, timeout=TIMEOUT
    )
    assert ours.status_code == 200, ours.text
    first = ours.json()
    claims = claims_of(server, first["access"])
    assert (claims["amr"], claims["sid"]) == (["fed"], sid)
    theirs = httpx.post(
        f"{server.api}/tokens/refresh", json={"refresh_token": first["refresh"]}, timeout=TIMEOUT
    )
    assert theirs.status_code == 200, theirs.text
    second = theirs.json()["data"]
    claims = claims_of(server, second["access_token"])
    assert (claims["amr"], claims["sid"]) == (["fed"], sid)
    assert get(server, "/api/auth/me", second["access_token"]).status_code == 200
    assert session_ids(server, second["access_token"]) == [sid]


def test_second_login_with_the_same_sub_is_the_same_user(server, idp):
    sub = "carol-sub"
    first = logged_in(server, idp, sub)
    # a later token of the provider: another address, the same subject
    again = social_login(server, idp.id_token(**claims_for(sub, email="carol@new.example")))
    assert again.status_code == 200, again.text
    second = meta(again)
    one, two = claims_of(server, first["access_token"]), claims_of(server, second["access_token"])
    assert one["user_id"] == two["user_id"] and one["sid"] != two["sid"]
    assert two["amr"] == ["fed"]
    assert sorted(session_ids(server, second["access_token"])) == sorted([one["sid"], two["sid"]])
    found = state(server)
    assert found["accounts"][sub] == one["user_id"]
    assert list(found["accounts"].values()).count(one["user_id"]) == 1
    assert "carol@new.example" not in found["users"]


def hs256(idp, claims):
    """An HS256 token whose HMAC secret is the provider's public key (PEM): the key
    confusion attack. Made by hand: PyJWT refuses to sign with a PEM as an HMAC secret."""
    pem = idp.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": idp.kid}
    now = int(time.time())
    body = {"iss": idp.issuer, "iat": now, "exp": now + 300, **claims}
    signing_input = b".".join(_b64(json.dumps(part).encode()) for part in (header, body))
    return (signing_input + b"." + _b64(hmac.digest(pem, signing_input, "sha256"))).decode()


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def bad_token(idp, fault, sub):
    """An id_token for ``sub`` with one fault, all else right."""
    claims = claims_for(sub)
    if fault == "wrong_signature":  # another key, under the provider's kid
        return idp.id_token(key=new_key(), **claims)
    if fault == "unknown_kid":
        return idp.id_token(key=new_key(), headers={"kid": "not-a-key-of-it"}, **claims)
    if fault == "wrong_aud":
        return idp.id_token(**{**claims, "aud": "another-client"})
    if fault == "no_aud":
        return idp.id_token(**{**claims, "aud": None})
    if fault == "wrong_iss":
        return idp.id_token(**claims, iss="http://127.0.0.1:9/other")
    if fault == "expired":
        now = int(time.time())
        return idp.id_token(**claims, iat=now - 3600, exp=now - 600)
    if fault == "alg_none":
        return idp.id_token(algorithm="none", **claims)
    if fault == "alg_none_no_kid":
        return idp.id_token(algorithm="none", headers={"kid": None}, **claims)
    if fault == "hs256_with_the_public_key":
        return hs256(idp, claims)
    if fault == "es256_under_the_rsa_kid":  # allauth decodes with the header's alg
        return jwt.encode(
            {"iss": idp.issuer, "iat": int(time.time()), "exp": int(time.time()) + 300, **claims},
            ec.generate_private_key(ec.SECP256R1()),
            algorithm="ES256",
            headers={"kid": idp.kid},
        )
    if fault == "no_sub":
        return idp.id_token(**{**claims, "sub": None})
    if fault in {"no_exp", "no_iat"}:  # allauth checks exp only where there is one
        return idp.id_token(**claims, **{fault[3:]: None})
    if fault == "no_kid":  # a good signature, yet no key named
        return idp.id_token(headers={"kid": None}, **claims)
    if fault == "not_a_jwt":
        return "not-a-jwt"
    raise AssertionError(fault)


FAULTS = [
    "wrong_signature",
    "unknown_kid",
    "wrong_aud",
    "no_aud",
    "wrong_iss",
    "expired",
    "alg_none",
    "alg_none_no_kid",
    "hs256_with_the_public_key",
    "es256_under_the_rsa_kid",
    "no_sub",
    "no_exp",
    "no_iat",
    "no_kid",
    "not_a_jwt",
]


def assert_refused(answer):
    """allauth's 400 for the token, with nothing of a login in it."""
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["status"] == 400
    assert "invalid_token" in [error["code"] for error in body["errors"]], body
    assert "access_token" not in (body.get("meta") or {}) and "session_token" not in (
        body.get("meta") or {}
    )
    assert "set-cookie" not in answer.headers


@pytest.mark.parametrize("fault", FAULTS)
def test_bad_id_token_is_refused_with_nothing_made(server, idp, fault):
    known = f"known-{fault}"
    live = logged_in(server, idp, known)  # the same sub with a good token: in
    before = session_ids(server, live["access_token"])
    assert_refused(social_login(server, bad_token(idp, fault, known)))
    assert_refused(social_login(server, bad_token(idp, fault, f"new-{fault}")))
    assert session_ids(server, live["access_token"]) == before
    found = state(server)
    assert f"new-{fault}" not in found["accounts"]
    assert f"new-{fault}@idp.example.com" not in found["users"]


@pytest.mark.parametrize(
    "provider, client_id",
    [("nosuchidp", CLIENT_ID), ("nosuchidp", "other"), (PROVIDER, "another-client")],
)
def test_token_for_an_unknown_provider_or_client_is_refused(server, idp, provider, client_id):
    sub = f"unknown-{provider}-{client_id}"
    answer = social_login(
        server, idp.id_token(**claims_for(sub, aud=client_id)), provider, client_id
    )
    assert answer.status_code == 400, answer.text
    assert "access_token" not in meta(answer)
    found = state(server)
    assert sub not in found["accounts"] and f"{sub}@idp.example.com" not in found["users"]


def current_code(totp):
    """The TOTP code, not one about to expire: allauth accepts the current step only."""
    left = totp.interval - time.time() % totp.interval
    if left < 3:
        time.sleep(left + 0.1)
    return totp.now()


def test_social_login_of_a_user_with_totp_stops_at_mfa(server, idp):
    sub = "dave-sub"
    tokens = logged_in(server, idp, sub)
    access = tokens["access_token"]
    # allauth asks for a recent reauthentication first; a social-only user has no
    # password for POST /auth/reauthenticate, so it is the code allauth mails
    email = f"{sub}@idp.example.com"
    asked = httpx.post(
        f"{server.api}/auth/reauthenticate/code/request",
        json={"email": email},
        headers=bearer(access),
        timeout=TIMEOUT,
    )
    assert asked.status_code == 200, asked.text
    code = re.search(r"^([A-Z0-9]{4}-[A-Z0-9]{4})$", server.wait_for_mail(email), re.M)
    assert code, "no code in the mail"
    again = httpx.post(
        f"{server.api}/auth/reauthenticate/code/confirm",
        json={"code": code.group(1)},
        headers=bearer(access),
        timeout=TIMEOUT,
    )
    assert again.status_code == 200, again.text
    url = f"{server.api}/account/authenticators/totp"
    offered = httpx.get(url, headers=bearer(access), timeout=TIMEOUT)
    assert offered.status_code == 404, offered.text
    totp = pyotp.TOTP(meta(offered)["secret"])
    on = httpx.post(url, json={"code": current_code(totp)}, headers=bearer(access), timeout=TIMEOUT)
    assert on.status_code == 200, on.text
    before = session_ids(server, access)

    pending = social_login(server, idp.id_token(**claims_for(sub)))
    assert pending.status_code == 401, pending.text
    flows = {flow["id"]: flow for flow in pending.json()["data"]["flows"]}
    assert flows["mfa_authenticate"].get("is_pending") is True, flows
    handle = meta(pending).get("session_token")
    assert handle and "access_token" not in meta(pending) and "refresh_token" not in meta(pending)
    assert session_ids(server, access) == before
    # the pending flow's handle is no access token of ours
    assert get(server, "/api/auth/me", handle).status_code == 401

    done = httpx.post(
        f"{server.api}/auth/2fa/authenticate",
        json={"code": current_code(totp)},
        headers={"X-Session-Token": handle},
        timeout=TIMEOUT,
    )
    assert done.status_code == 200, done.text
    claims = claims_of(server, meta(done)["access_token"])
    assert claims["amr"] == ["fed", "otp", "mfa"]
    assert claims["sid"] not in before
    assert sorted(session_ids(server, access)) == sorted([*before, claims["sid"]])


def test_our_password_login_refuses_a_social_only_user(server, idp):
    sub = "erin-sub"
    email = f"{sub}@idp.example.com"
    tokens = logged_in(server, idp, sub)
    me = get(server, "/api/auth/me", tokens["access_token"]).json()
    assert state(server)["users"][email] == [me["id"], False]  # no usable password
    before = session_ids(server, tokens["access_token"])
    for username in (me["username"], email):
        for password in (PASSWORD, "!", "x"):
            answer = httpx.post(
                f"{server.url}/api/auth/login",
                json={"username": username, "password": password},
                timeout=TIMEOUT,
            )
            assert answer.status_code == 401, answer.text
            assert answer.headers["content-type"].startswith("application/json")
            body = answer.json()
            assert body["code"] == "no_active_account", body
            assert "access" not in body and "refresh" not in body
    assert session_ids(server, tokens["access_token"]) == before


def test_provider_address_of_an_existing_account_does_not_log_into_it(server, idp):
    """SOCIALACCOUNT_EMAIL_AUTHENTICATION is off: a provider naming the address of a
    password account gets no tokens of that account."""
    email = "owner@example.com"
    owner = server.signup(email)["access_token"]
    before = session_ids(server, owner)
    answer = social_login(server, idp.id_token(**claims_for("mallory-sub", email=email)))
    # allauth's enumeration guard: it answers as for a new address waiting for its
    # verification, and makes no user, no social account, no tokens
    assert answer.status_code == 401, answer.text
    assert "access_token" not in meta(answer)
    flows = {flow["id"]: flow for flow in answer.json()["data"]["flows"]}
    assert flows["verify_email"].get("is_pending") is True, answer.text
    assert session_ids(server, owner) == before
    found = state(server)
    assert "mallory-sub" not in found["accounts"]
    assert found["emails"].count(email) == 1


def test_unverified_provider_address_gets_no_tokens(server, idp):
    sub = "frank-sub"
    answer = social_login(server, idp.id_token(**claims_for(sub, email_verified=False)))
    assert answer.status_code == 401, answer.text
    assert "access_token" not in meta(answer)
    flows = {flow["id"]: flow for flow in answer.json()["data"]["flows"]}
    assert flows["verify_email"].get("is_pending") is True, flows


def test_replayed_id_token_with_a_jti_is_refused(server, idp):
    """allauth keeps a jti it accepted until the token's exp (in Django's cache: per
    process, as the demo's cache is): the same id_token again gets nothing."""
    token = idp.id_token(**claims_for("grace-sub"), jti="grace-token-1")
    first = social_login(server, token)
    assert first.status_code == 200, first.text
    before = session_ids(server, meta(first)["access_token"])
    assert_refused(social_login(server, token))
    assert session_ids(server, meta(first)["access_token"]) == before

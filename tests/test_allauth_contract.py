"""The contract with django-allauth that authapi.allauth relies on: fails loudly when an
allauth upgrade changes it.

Shape checks (methods, signatures, signals, helpers) run inside the demo's Django with
accounts on (``server.shell``): the in-process suite has no allauth installed. Behaviour
is checked over HTTP against a live accounts server.
"""

from __future__ import annotations

import json

import httpx
import pyotp  # noqa: F401  (the accounts extra's test dependency: present where allauth is)
import pytest

from tests.accounts_server import PASSWORD, AccountsServer, meta

METHODS = {
    "get_session_token": "(self, request: 'HttpRequest') -> 'str | None'",
    "create_access_token_payload": "(self, request: 'HttpRequest') -> 'dict[str, Any] | None'",
    "create_access_token": "(self, request: 'HttpRequest') -> 'str | None'",
    "create_session_token": "(self, request: 'HttpRequest') -> 'str'",
    "lookup_session": "(self, session_token: 'str') -> 'SessionBase | None'",
    "refresh_token": "(self, refresh_token: 'str') -> 'tuple[str, str] | None'",
}

SHAPE = """
import inspect, json
import allauth
from allauth.headless.tokens.strategies.base import AbstractTokenStrategy as Base
from allauth.account import signals, authentication
from django.contrib.auth.signals import user_logged_out
from authapi.allauth import TokenStrategy
from allauth.headless.tokens.strategies import base as base_module

def params(f):
    return [(p.name, p.kind.name) for p in inspect.signature(f).parameters.values()]

methods = {
    name: {"base": params(f), "ours": params(getattr(TokenStrategy, name)),
           "abstract": getattr(f, "__isabstractmethod__", False)}
    for name, f in inspect.getmembers(Base, inspect.isfunction) if not name.startswith("_")
}
out = {
    "version": allauth.__version__,
    "methods": methods,
    "openapi_spec": isinstance(inspect.getattr_static(Base, "openapi_spec"), classmethod),
    "spec": TokenStrategy.openapi_spec(),
    "records": params(authentication.get_authentication_records),
    "signals": {
        name: type(getattr(signals, name, None)).__name__
        for name in ("authentication_step_completed", "password_reset", "password_changed")
    },
    "logged_out": type(user_logged_out).__name__,
}
print(json.dumps(out))
"""

EMAIL = "contract@example.com"


@pytest.fixture(scope="module")
def server():
    with AccountsServer() as live:
        yield live


@pytest.fixture(scope="module")
def shape(server):
    return json.loads(server.shell(SHAPE).strip().splitlines()[-1])


@pytest.fixture(scope="module")
def user(server):
    """A verified account (signup, the mailed link)."""
    server.signup(EMAIL)
    return EMAIL


def login(server, email=EMAIL, password=PASSWORD):
    answer = httpx.post(f"{server.api}/auth/login", json={"email": email, "password": password})
    assert answer.status_code == 200, answer.text
    return meta(answer)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def sessions_of(server, access):
    answer = httpx.get(f"{server.url}/api/auth/sessions", headers=bearer(access))
    return answer


def test_version_line_is_the_tested_one(shape):
    assert shape["version"].startswith("65."), shape["version"]


def test_base_has_exactly_the_six_methods_we_override(shape):
    assert set(shape["methods"]) == set(METHODS)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_signature_of_each_method_matches_ours(shape, name):
    method = shape["methods"][name]
    assert method["ours"] == method["base"], (name, method)
    # The two allauth requires; the others have a default we replace.
    assert method["abstract"] == (name in {"create_session_token", "lookup_session"})


def test_openapi_spec_is_a_classmethod_and_documents_our_bearer(shape):
    assert shape["openapi_spec"]
    schemes = shape["spec"]["securitySchemes"]
    assert schemes["SessionToken"]["name"] == "X-Session-Token"
    assert schemes["Bearer"]["scheme"] == "bearer"
    assert {"Bearer": []} in shape["spec"]["security"]


def test_openapi_document_served_carries_our_scheme(server):
    spec = httpx.get(f"{server.api.rsplit('/app/v1', 1)[0]}/openapi.json")
    assert spec.status_code == 200, spec.text
    assert "Bearer" in spec.json()["components"]["securitySchemes"]


def test_signals_and_records_helper_exist(shape):
    assert shape["signals"] == {
        "authentication_step_completed": "Signal",
        "password_reset": "Signal",
        "password_changed": "Signal",
    }
    assert shape["logged_out"] == "Signal"
    assert [name for name, _ in shape["records"]][:2] == ["request", "user"]


def test_login_mints_exactly_one_session(server, user):
    first = login(server)
    before = sessions_of(server, first["access_token"]).json()
    second = login(server)
    assert second["access_token"] and second["refresh_token"] and second["expires_in"] > 0
    after = sessions_of(server, second["access_token"]).json()
    assert len(after) == len(before) + 1  # create_access_token_payload once, not twice


def test_bearer_opens_allauth_session_view(server, user):
    """get_session_token takes our access token (expose_access_token's handle)."""
    tokens = login(server)
    answer = httpx.get(f"{server.api}/auth/session", headers=bearer(tokens["access_token"]))
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["user"]["email"] == EMAIL


def test_tokens_of_the_verify_flow_open_allauth_endpoints(server, user):
    """Verification logs in without a password: Django keeps that login only when the
    backend's own dotted path is in AUTHENTICATION_BACKENDS."""
    email = "verified@example.com"
    with httpx.Client(base_url=server.api) as client:
        pending = client.post("/auth/signup", json={"email": email, "password": PASSWORD})
        key = server.link_key(server.wait_for_mail(email), "verify-email")
        done = client.post(
            "/auth/email/verify",
            json={"key": key},
            headers={"X-Session-Token": meta(pending)["session_token"]},
        )
        answer = client.get("/auth/session", headers=bearer(meta(done)["access_token"]))
    assert answer.status_code == 200, answer.text


def test_allauth_refresh_rotates_by_our_rule(server, user):
    tokens = login(server)
    url = f"{server.api}/tokens/refresh"
    fresh = httpx.post(url, json={"refresh_token": tokens["refresh_token"]})
    assert fresh.status_code == 200, fresh.text
    pair = fresh.json()["data"]
    assert pair["refresh_token"] != tokens["refresh_token"]
    me = httpx.get(f"{server.url}/api/auth/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200
    replay = httpx.post(url, json={"refresh_token": tokens["refresh_token"]})
    assert replay.status_code >= 400  # reuse: the family ends
    me = httpx.get(f"{server.url}/api/auth/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 401


def test_lookup_session_refuses_a_session_ended_at_our_door(server, user):
    tokens = login(server)
    handle = tokens["session_token"]
    ok = httpx.get(f"{server.api}/auth/session", headers={"X-Session-Token": handle})
    assert ok.status_code == 200, ok.text
    out = httpx.post(
        f"{server.url}/api/auth/logout",
        json={"refresh": tokens["refresh_token"]},
        headers=bearer(tokens["access_token"]),
    )
    assert out.status_code < 300, out.text
    gone = httpx.get(f"{server.api}/auth/session", headers={"X-Session-Token": handle})
    assert gone.status_code in (401, 410), gone.text


def test_password_change_ends_every_session_and_a_new_login_works(server):
    email = "changer@example.com"
    with httpx.Client(base_url=server.api) as client:
        pending = client.post("/auth/signup", json={"email": email, "password": PASSWORD})
        key = server.link_key(server.wait_for_mail(email), "verify-email")
        client.post(
            "/auth/email/verify",
            json={"key": key},
            headers={"X-Session-Token": meta(pending)["session_token"]},
        )
    other = login(server, email)
    mine = login(server, email)
    new = PASSWORD + "-new"
    changed = httpx.post(
        f"{server.api}/account/password/change",
        json={"current_password": PASSWORD, "new_password": new},
        headers=bearer(mine["access_token"]),
    )
    assert changed.status_code == 200, changed.text
    for tokens in (other, mine):
        me = httpx.get(f"{server.url}/api/auth/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 401, me.text
        refresh = httpx.post(
            f"{server.url}/api/auth/refresh", json={"refresh": tokens["refresh_token"]}
        )
        assert refresh.status_code == 401, refresh.text
    again = login(server, email, new)
    me = httpx.get(f"{server.url}/api/auth/me", headers=bearer(again["access_token"]))
    assert me.status_code == 200 and me.json()["email"] == email

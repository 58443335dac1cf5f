"""Our /api/token/ aliases against real djangorestframework-simplejwt views, in-process.

Each case runs the same steps against simplejwt (``/simplejwt/token/``, tests/drf_urls.py:
rotation on, blacklist app installed, served by Django's handler with no middleware: it
needs none, and ours would add to its answers) and against our aliases in the whole app,
each with its own user and tokens, and compares the answers: the same status, and every
key of simplejwt's body in ours with the same value (token strings and the human
``detail`` text aside). Ours may carry more keys (``code``, ``expires_in``...). The
differences we keep on purpose are pinned at the end, each with its reason.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest

pytest.importorskip(
    "rest_framework_simplejwt", reason="djangorestframework-simplejwt is not installed"
)

from tests import drf_settings  # noqa: E402
from tests.conftest import PASSWORD, bearer, login  # noqa: E402

SIMPLEJWT, OURS = "/simplejwt/token/", "/api/token/"
TOKENS = {"access", "refresh"}
_names = itertools.count()


@pytest.fixture(scope="module", autouse=True)
def drf():
    with drf_settings.installed():
        yield


@pytest.fixture(scope="module")
async def bare(drf):
    """The same URLs through Django's handler alone: no middleware of ours in the way."""
    from django.core.handlers.asgi import ASGIHandler
    from django.test import override_settings

    with override_settings(MIDDLEWARE=[]):
        handler: Any = ASGIHandler()  # django-stubs and httpx type ASGI apps differently
    transport = httpx.ASGITransport(app=handler, client=("127.0.0.1", 50001))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        yield c


@dataclass
class Side:
    """One implementation: where its endpoints are, and a user logged in there."""

    client: httpx.AsyncClient
    prefix: str
    username: str
    inactive: str
    pair: dict[str, Any]

    async def post(self, path: str = "", body: Any = None, **kwargs: Any) -> httpx.Response:
        if body is not None:
            kwargs["json"] = body
        return await self.client.post(self.prefix + path, **kwargs)

    async def login(self) -> dict[str, Any]:
        response = await self.post("", {"username": self.username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return dict(response.json())


async def _side(client, make_user, prefix: str) -> Side:
    user, inactive = await make_user(), await make_user(is_active=False)
    side = Side(client, prefix, user.username, inactive.username, {})
    side.pair = await side.login()
    return side


def _claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


Case = Callable[[Side], Awaitable[httpx.Response]]


async def _rotated(side: Side) -> str:
    """A refresh token already spent by a refresh: simplejwt has blacklisted it."""
    response = await side.post("refresh/", {"refresh": side.pair["refresh"]})
    assert response.status_code == 200, response.text
    return str(side.pair["refresh"])


async def _blacklisted(side: Side) -> str:
    response = await side.post("blacklist/", {"refresh": side.pair["refresh"]})
    assert response.status_code == 200, response.text
    return str(side.pair["refresh"])


async def _refresh_rotated(s: Side) -> httpx.Response:
    return await s.post("refresh/", {"refresh": await _rotated(s)})


async def _refresh_blacklisted(s: Side) -> httpx.Response:
    return await s.post("refresh/", {"refresh": await _blacklisted(s)})


async def _verify_rotated(s: Side) -> httpx.Response:
    return await s.post("verify/", {"token": await _rotated(s)})


async def _verify_blacklisted(s: Side) -> httpx.Response:
    return await s.post("verify/", {"token": await _blacklisted(s)})


async def _blacklist_again(s: Side) -> httpx.Response:
    return await s.post("blacklist/", {"refresh": await _blacklisted(s)})


def _good(s: Side) -> dict[str, str]:
    return {"username": s.username, "password": PASSWORD}


CASES: dict[str, Case] = {
    # POST /api/token/
    "login": lambda s: s.post("", _good(s)),
    "login-form": lambda s: s.post("", data=_good(s)),
    "login-wrong-password": lambda s: s.post("", {"username": s.username, "password": "nope"}),
    "login-unknown-user": lambda s: s.post(
        "", {"username": f"nobody-{next(_names)}-{time.time_ns()}", "password": "x"}
    ),
    "login-inactive-user": lambda s: s.post("", {"username": s.inactive, "password": PASSWORD}),
    "login-missing-fields": lambda s: s.post("", {}),
    "login-empty-body": lambda s: s.post(""),
    "login-missing-password-form": lambda s: s.post("", data={"username": s.username}),
    "login-blank-username": lambda s: s.post("", {"username": "", "password": "x"}),
    "login-null-password": lambda s: s.post("", {"username": s.username, "password": None}),
    "login-nul-byte": lambda s: s.post("", {"username": "a\x00b", "password": "x"}),
    "login-malformed-json": lambda s: s.post(
        "", content=b"{nope", headers={"Content-Type": "application/json"}
    ),
    "login-text-plain": lambda s: s.post(
        "", content=b"username=a", headers={"Content-Type": "text/plain"}
    ),
    "login-get": lambda s: s.client.get(s.prefix),
    # POST /api/token/refresh/
    "refresh": lambda s: s.post("refresh/", {"refresh": s.pair["refresh"]}),
    "refresh-form": lambda s: s.post("refresh/", data={"refresh": s.pair["refresh"]}),
    "refresh-spent-token": _refresh_rotated,
    "refresh-blacklisted-token": _refresh_blacklisted,
    "refresh-with-access-token": lambda s: s.post("refresh/", {"refresh": s.pair["access"]}),
    "refresh-garbage": lambda s: s.post("refresh/", {"refresh": "not-a-token"}),
    "refresh-missing-field": lambda s: s.post("refresh/", {}),
    # POST /api/token/verify/
    "verify-access": lambda s: s.post("verify/", {"token": s.pair["access"]}),
    "verify-refresh": lambda s: s.post("verify/", {"token": s.pair["refresh"]}),
    "verify-garbage": lambda s: s.post("verify/", {"token": "not-a-token"}),
    "verify-tampered": lambda s: s.post("verify/", {"token": s.pair["access"][:-4] + "AAAA"}),
    "verify-missing-field": lambda s: s.post("verify/", {}),
    "verify-spent-refresh": _verify_rotated,
    "verify-blacklisted-refresh": _verify_blacklisted,
    # POST /api/token/blacklist/
    "blacklist": lambda s: s.post("blacklist/", {"refresh": s.pair["refresh"]}),
    "blacklist-form": lambda s: s.post("blacklist/", data={"refresh": s.pair["refresh"]}),
    "blacklist-already-blacklisted": _blacklist_again,
    "blacklist-access-token": lambda s: s.post("blacklist/", {"refresh": s.pair["access"]}),
    "blacklist-garbage": lambda s: s.post("blacklist/", {"refresh": "not-a-token"}),
    "blacklist-missing-field": lambda s: s.post("blacklist/", {}),
}


def _assert_answers_alike(theirs: httpx.Response, ours: httpx.Response) -> None:
    assert ours.status_code == theirs.status_code, (theirs.text, ours.text)
    expected, got = theirs.json(), ours.json()
    assert isinstance(got, dict), ours.text
    assert set(expected) <= set(got), (expected, got)
    for key, value in expected.items():
        if key in TOKENS and theirs.status_code == 200:
            assert isinstance(got[key], str) and got[key].count(".") == 2
        elif key != "detail":  # human text: ours says more (see the module's docstring)
            assert got[key] == value, (key, expected, got)
    if theirs.status_code == 401:
        assert ours.headers["WWW-Authenticate"].startswith(theirs.headers["WWW-Authenticate"])
    if theirs.status_code >= 400:
        assert {"detail", "code"} <= set(got)  # our contract, kept on the aliases


@pytest.mark.parametrize("case", CASES)
async def test_alias_answers_as_simplejwt(bare, client, make_user, case):
    theirs = await CASES[case](await _side(bare, make_user, SIMPLEJWT))
    ours = await CASES[case](await _side(client, make_user, OURS))
    _assert_answers_alike(theirs, ours)


async def test_the_answers_in_detail(client, make_user):
    """The texts simplejwt clients show, and the keys they read, on a few answers."""
    side = await _side(client, make_user, OURS)
    wrong = await side.post("", {"username": side.username, "password": "nope"})
    assert wrong.json() == {
        "detail": "No active account found with the given credentials",
        "code": "no_active_account",
    }
    missing = await side.post("", {})
    assert missing.status_code == 400
    body = missing.json()
    assert body["code"] == "invalid" and body["detail"]
    assert body["username"] == body["password"] == ["This field is required."]
    out = await side.post("blacklist/", {"refresh": side.pair["refresh"]})
    assert out.status_code == 200 and out.json() == {}
    assert out.headers["Content-Type"] == "application/json"
    spent = await side.post("verify/", {"token": side.pair["refresh"]})
    assert spent.status_code == 400
    assert spent.json()["non_field_errors"] == ["Token is blacklisted"]
    assert "WWW-Authenticate" not in spent.headers


async def test_our_own_endpoints_keep_their_answers(client, make_user):
    """The aliases changed; /api/auth/* did not: 204 logout, 422 fields, 401 verify."""
    side = await _side(client, make_user, OURS)
    side.prefix = "/api/auth/"
    assert (await side.post("login", {})).status_code == 422
    assert (await side.post("refresh", {})).status_code == 422
    assert (await side.post("logout", {"refresh": side.pair["refresh"]})).status_code == 204
    assert (await side.post("verify", {"token": side.pair["refresh"]})).status_code == 401
    plain = await side.post("login", content=b"a", headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415  # as the aliases (API.md: 415 on every endpoint)


# --- authapi.drf against simplejwt's JWTAuthentication ---------------------------------


@pytest.mark.parametrize(
    "header",
    [None, "Bearer not-a-token", "Bearer a b", "Bearer", "Token abc", "Bearer {refresh}"],
    ids=["absent", "garbage", "two-values", "scheme-only", "other-scheme", "refresh-token"],
)
async def test_drf_authentication_answers_as_simplejwts(bare, client, make_user, header):
    """Both classes in a DRF project with no middleware of ours: the same answers."""
    sides = {
        "/simplejwt/me": await _side(bare, make_user, SIMPLEJWT),
        "/drf/me": await _side(client, make_user, OURS),
    }
    answers = []
    for path, side in sides.items():
        value = None if header is None else header.format(refresh=side.pair["refresh"])
        headers = {} if value is None else {"Authorization": value}
        answers.append(await bare.get(path, headers=headers))
    theirs, ours = answers
    assert ours.status_code == theirs.status_code == 401, (theirs.text, ours.text)
    expected, got = theirs.json(), ours.json()
    assert set(expected) == set(got), (expected, got)
    assert got.get("code") == expected.get("code")
    if "messages" in expected:
        assert got["detail"] == expected["detail"]
        assert [set(m) for m in got["messages"]] == [set(m) for m in expected["messages"]]
        assert [m["token_class"] for m in got["messages"]] == ["AccessToken"]
    else:
        assert got["detail"] == expected["detail"]
    assert ours.headers["WWW-Authenticate"].startswith(theirs.headers["WWW-Authenticate"])


# --- request.auth: what views written for simplejwt read ---------------------------------

# The values that name the token or the user: equal in kind, not in value.
_OWN_VALUES = {"user_id", "get", "user.token[user_id]", "jti", "exp", "payload"}


@pytest.mark.parametrize(
    ("theirs_path", "ours_path"),
    [("/simplejwt/token", "/drf/token"), ("/simplejwt/stateless/token", "/drf/stateless/token")],
    ids=["JWTAuthentication", "stateless"],
)
async def test_request_auth_reads_as_simplejwts_access_token(
    bare, client, make_user, theirs_path, ours_path
):
    """``request.auth["user_id"]``, ``.get()``, ``in``, ``.payload``, ``.token``, ``str()``
    and ``request.user.token``: one view's code under simplejwt's class and under ours."""
    theirs_side = await _side(bare, make_user, SIMPLEJWT)
    ours_side = await _side(client, make_user, OURS)
    theirs = await bare.get(theirs_path, headers=bearer(theirs_side.pair["access"]))
    ours = await bare.get(ours_path, headers=bearer(ours_side.pair["access"]))
    assert theirs.status_code == ours.status_code == 200, (theirs.text, ours.text)
    expected, got = theirs.json(), ours.json()
    assert set(got) == set(expected), (expected, got)
    for key, value in expected.items():
        if key not in _OWN_VALUES:
            assert got[key] == value, (key, expected, got)
    their_claims, our_claims = (
        _claims(theirs_side.pair["access"]),
        _claims(ours_side.pair["access"]),
    )
    assert expected["payload"] == their_claims and got["payload"] == our_claims
    assert set(their_claims) <= set(our_claims)  # ours adds sid (and iss, aud when set)
    assert (got["jti"], got["exp"]) == (our_claims["jti"], our_claims["exp"])
    # The one difference in value: simplejwt 5.5 writes the primary key as a string.
    assert isinstance(expected["user_id"], str) and isinstance(got["user_id"], int)
    for key in ("user_id", "get", "user.token[user_id]"):
        if key in got:
            assert got[key] == our_claims["user_id"] and expected[key] == their_claims["user_id"]


async def test_the_ninja_access_context_reads_the_same(client, user):
    """``authapi.auth.AccessContext`` (Ninja's ``request.auth``) reads claims alike."""
    from authapi.auth import check_access

    pair = await login(client, user)
    access = await check_access(pair["access"])
    assert access["user_id"] == access.user_id == user.pk
    assert access.get("sid") == access.sid and access.get("nope", 3) == 3
    assert "jti" in access and "nope" not in access
    assert access.payload == _claims(pair["access"])
    with pytest.raises(KeyError):
        access["nope"]
    assert bool(access)  # Ninja takes a falsy result of an auth class for a refusal


# --- differences kept on purpose ---------------------------------------------------------


async def test_a_revoked_access_token_is_refused_where_simplejwt_accepts_it(
    bare, client, make_user
):
    """simplejwt blacklists refresh tokens only: their access tokens live on after logout.
    Ours die with their session."""
    statuses = []
    for http, prefix in ((bare, SIMPLEJWT), (client, OURS)):
        side = await _side(http, make_user, prefix)
        assert (await side.post("blacklist/", {"refresh": side.pair["refresh"]})).is_success
        statuses.append((await side.post("verify/", {"token": side.pair["access"]})).status_code)
    assert statuses == [200, 401]


@pytest.mark.parametrize(
    ("body", "simplejwt_status"),
    [
        ({"password": "x", "username": 5}, 401),  # DRF's CharField turns 5 into "5"
        ({"password": "x", "username": "a" * 151}, 401),  # no length limit there
    ],
    ids=["number-username", "over-long-username"],
)
async def test_bodies_we_refuse_before_checking_a_password(bare, client, body, simplejwt_status):
    """simplejwt hashes whatever it gets; we refuse a non-string and a username longer
    than Django's username field allows before any hashing (400, never a 5xx)."""
    theirs = await bare.post(SIMPLEJWT, json=body)
    ours = await client.post(OURS, json=body)
    assert theirs.status_code == simplejwt_status
    assert ours.status_code == 400
    assert {"detail", "code"} <= set(ours.json())


async def test_a_client_that_keeps_its_first_refresh_token_is_logged_out(
    bare, client, make_user, monkeypatch
):
    """simplejwt's default (ROTATE_REFRESH_TOKENS off) answers a refresh with an access
    token alone: its clients send the same refresh token each time. Ours always rotate,
    and a spent refresh token sent again is reuse: the whole session ends."""
    from rest_framework_simplejwt import serializers

    # simplejwt's modules keep the api_settings of their import: override_settings
    # (which rebinds the name in rest_framework_simplejwt.settings) misses them.
    their_settings = vars(serializers)["api_settings"]
    for name in ("ROTATE_REFRESH_TOKENS", "BLACKLIST_AFTER_ROTATION"):
        monkeypatch.setattr(their_settings, name, False)  # simplejwt's defaults
    side = await _side(bare, make_user, SIMPLEJWT)
    answers = [await side.post("refresh/", {"refresh": side.pair["refresh"]}) for _ in "ab"]
    assert [a.status_code for a in answers] == [200, 200]
    assert set(answers[0].json()) == {"access"}

    ours = await _side(client, make_user, OURS)
    first = await ours.post("refresh/", {"refresh": ours.pair["refresh"]})
    assert first.status_code == 200 and set(first.json()) >= {"access", "refresh"}
    again = await ours.post("refresh/", {"refresh": ours.pair["refresh"]})
    assert again.status_code == 401 and again.json()["code"] == "token_not_valid"
    successor = first.json()
    assert (await client.get("/drf/me", headers=bearer(successor["access"]))).status_code == 401
    spent = await ours.post("refresh/", {"refresh": successor["refresh"]})
    assert spent.status_code == 401


async def test_tokens_simplejwt_issued_are_refused_after_the_switch(bare, client, make_user):
    """No sid, no kid, not our key: clients log in once more."""
    theirs = await _side(bare, make_user, SIMPLEJWT)
    me = await bare.get("/drf/me", headers=bearer(theirs.pair["access"]))
    assert me.status_code == 401 and me.json()["code"] == "token_not_valid"
    for path, body in [
        ("refresh/", {"refresh": theirs.pair["refresh"]}),
        ("verify/", {"token": theirs.pair["access"]}),
    ]:
        answer = await client.post(OURS + path, json=body)
        assert answer.status_code == 401 and answer.json()["code"] == "token_not_valid"


def test_the_guide_names_only_what_exists():
    """Every ``authapi.drf.X`` and ``authapi.X`` README's migration guide names is there, and
    the blacklist step is the command ``manage.py authapi`` has."""
    import re

    import authapi
    from authapi import drf
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    guide = readme[readme.index("## Migrating from simplejwt") :]
    guide = guide[: guide.index("\n## ")]
    named = set(re.findall(r"authapi\.drf\.(\w+)", guide))
    assert {"tokens_for_user", "logout", "logout_all", "ValidatedToken"} <= named
    assert named <= set(drf.__all__), named - set(drf.__all__)
    top = set(re.findall(r"authapi\.(\w+)", guide)) - {"drf", "events", "urls", "serve"}
    assert top <= set(authapi.__all__), top - set(authapi.__all__)
    assert "python manage.py authapi drop-simplejwt-tables" in guide
    assert "migrate token_blacklist zero`:" in guide  # named only to say why not

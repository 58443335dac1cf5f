"""RFC 9068's shape: access tokens say ``typ: at+jwt`` and carry ``sub``; refresh tokens
never say ``at+jwt``; access tokens issued before the upgrade keep working."""

from __future__ import annotations

import jwt
import pytest

from authapi import keys
from tests.conftest import bearer, login


def _sign(payload: dict, *, typ: object = "omit") -> str:
    key = keys.get().current
    headers: dict = {"kid": key.kid}
    if typ != "omit":
        headers["typ"] = typ
    return jwt.encode(payload, key.signing, algorithm=key.algorithm, headers=headers)


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


async def _access_ok(client, token: str) -> bool:
    me = await client.get("/api/auth/me", headers=bearer(token))
    verified = await client.post("/api/auth/verify", json={"token": token})
    drf = await client.get("/demo/sync", headers=bearer(token))
    answers = {me.status_code, verified.status_code, drf.status_code}
    assert len(answers) == 1, (me.text, verified.text, drf.text)
    return answers == {200}


async def test_access_token_has_the_rfc9068_shape(client, user):
    pair = await login(client, user)
    assert jwt.get_unverified_header(pair["access"])["typ"] == "at+jwt"
    claims = _claims(pair["access"])
    assert claims["sub"] == str(user.pk) and claims["user_id"] == user.pk
    assert jwt.get_unverified_header(pair["refresh"]).get("typ") != "at+jwt"
    refreshed = await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
    new = refreshed.json()
    assert jwt.get_unverified_header(new["access"])["typ"] == "at+jwt"
    assert _claims(new["access"])["sub"] == str(user.pk)
    assert jwt.get_unverified_header(new["refresh"]).get("typ") != "at+jwt"
    assert await _access_ok(client, new["access"])


@pytest.mark.parametrize("typ", ["JWT", "omit", "jwt"])
async def test_access_tokens_from_before_the_upgrade_still_pass(client, user, typ):
    pair = await login(client, user)
    legacy = {k: v for k, v in _claims(pair["access"]).items() if k != "sub"}
    token = _sign(legacy, typ=typ)
    assert await _access_ok(client, token)
    # and they are revoked as any other: logout ends them
    out = await client.post("/api/auth/logout", json={"refresh": pair["refresh"]})
    assert out.status_code == 204
    assert not await _access_ok(client, token)


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "AT+JWT"])
async def test_at_jwt_spellings_pass(client, user, typ):
    pair = await login(client, user)
    assert await _access_ok(client, _sign(_claims(pair["access"]), typ=typ))


async def test_a_refresh_token_signed_as_at_jwt_is_refused_everywhere(client, user):
    pair = await login(client, user)
    claims = _claims(pair["refresh"])
    for forged in (
        _sign(claims, typ="at+jwt"),
        _sign(claims | {"sub": str(user.pk)}, typ="at+jwt"),
    ):
        assert not await _access_ok(client, forged)
        spent = await client.post("/api/auth/refresh", json={"refresh": forged})
        assert spent.status_code == 401, spent.text
        assert spent.json()["code"] == "token_not_valid"
        out = await client.post("/api/auth/logout", json={"refresh": forged})
        assert out.status_code == 401
    # nothing was spent by the refused attempts
    assert (await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})).is_success


async def test_tokens_swap_roles_neither_way(client, user):
    pair = await login(client, user)
    for path in ("/api/auth/me", "/demo/sync"):
        assert (await client.get(path, headers=bearer(pair["refresh"]))).status_code == 401
    spent = await client.post("/api/auth/refresh", json={"refresh": pair["access"]})
    assert spent.status_code == 401
    # an access token re-signed with a legacy typ is still no refresh token
    legacy = _sign(_claims(pair["access"]), typ="JWT")
    assert (await client.post("/api/auth/refresh", json={"refresh": legacy})).status_code == 401


@pytest.mark.parametrize(
    ("change", "typ"),
    [
        ({"sub": None}, "at+jwt"),  # at+jwt without sub
        ({"sub": "someone-else"}, "at+jwt"),
        ({"sub": "someone-else"}, "JWT"),
        ({"sub": 7}, "at+jwt"),
        ({}, "dpop+jwt"),
        ({}, "JOSE"),
        ({}, ["at+jwt"]),
        ({}, 1),
    ],
)
async def test_a_wrong_shape_is_refused(client, user, change, typ):
    pair = await login(client, user)
    claims = _claims(pair["access"])
    for name, value in change.items():
        if value is None:
            del claims[name]
        else:
            claims[name] = value
    assert not await _access_ok(client, _sign(claims, typ=typ))
    assert await _access_ok(client, pair["access"])  # the real one still passes


def sub_thief(user) -> dict:
    """A custom-claims callable (AUTHAPI_CUSTOM_CLAIMS) that tries to choose ``sub``."""
    return {"sub": "admin", "plan": "pro"}


async def test_custom_claims_cannot_set_sub(client, user, authapi_settings):
    with authapi_settings(CUSTOM_CLAIMS="tests.test_token_shape.sub_thief"):
        pair = await login(client, user)
    access, refresh = _claims(pair["access"]), _claims(pair["refresh"])
    assert access["sub"] == str(user.pk) and access["plan"] == "pro"
    assert "sub" not in refresh and refresh["plan"] == "pro"
    assert await _access_ok(client, pair["access"])

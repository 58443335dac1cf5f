"""Signed nonsense: a token with our own valid signature but absurd claims is a 401, never a 500.

Each token starts from a real login and changes one claim, so that claim is the only
reason to refuse it. JSON literals PyJWT would never write (``NaN``, ``Infinity``,
``1e400``) are put into the payload text by hand and signed as they are.
"""

from __future__ import annotations

import json

import jwt
import pytest

from authapi import keys
from tests.conftest import bearer, login

NONSENSE_TIMES = {
    "nan": "NaN",
    "infinity": "Infinity",
    "minus-infinity": "-Infinity",
    "1e400": "1e400",  # Python's json reads it as inf
    "1e308": "1e308",
    "10**30": str(10**30),
    "negative": "-1",
    "past-year-9999": "253402300800",
}


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _sign_text(payload: str) -> str:
    """A JWS over exactly this payload text, signed with the service's current key."""
    key = keys.get().current
    return jwt.api_jws.encode(
        payload.encode(), key.signing, algorithm=key.algorithm, headers={"kid": key.kid}
    )


def _with_literal(token: str, claim: str, literal: str) -> str:
    """``token`` re-signed with ``claim`` set to the raw JSON ``literal``."""
    text = json.dumps(_claims(token) | {claim: "__LITERAL__"})
    return _sign_text(text.replace('"__LITERAL__"', literal))


def _assert_401(response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "token_not_valid"


async def _assert_access_refused(client, token: str) -> None:
    _assert_401(await client.get("/api/auth/me", headers=bearer(token)))
    _assert_401(await client.get("/api/auth/sessions", headers=bearer(token)))
    _assert_401(await client.post("/api/auth/verify", json={"token": token}))


async def _assert_refresh_refused(client, token: str) -> None:
    _assert_401(await client.post("/api/auth/verify", json={"token": token}))
    _assert_401(await client.post("/api/auth/refresh", json={"refresh": token}))
    _assert_401(await client.post("/api/auth/logout", json={"refresh": token}))


@pytest.mark.parametrize("literal", NONSENSE_TIMES.values(), ids=NONSENSE_TIMES.keys())
@pytest.mark.parametrize("claim", ["exp", "iat"])
async def test_absurd_times_are_refused_on_every_door(client, user, claim, literal):
    pair = await login(client, user)
    await _assert_access_refused(client, _with_literal(pair["access"], claim, literal))
    await _assert_refresh_refused(client, _with_literal(pair["refresh"], claim, literal))
    # the untouched pair still works: nothing above spent or revoked the session
    assert (await client.get("/api/auth/me", headers=bearer(pair["access"]))).status_code == 200
    assert (await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})).is_success


@pytest.mark.parametrize("claim", ["jti", "sid"])
async def test_ids_with_a_trailing_newline_are_refused(client, user, claim):
    pair = await login(client, user)
    access = _claims(pair["access"])
    await _assert_access_refused(
        client, _sign_text(json.dumps(access | {claim: access[claim] + "\n"}))
    )
    refresh = _claims(pair["refresh"])
    forged = _sign_text(json.dumps(refresh | {claim: refresh[claim] + "\n"}))
    await _assert_refresh_refused(client, forged)
    # a refused token is not taken for a replay of the real one: the session lives on
    assert (await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})).is_success


async def test_session_id_with_a_trailing_newline_is_not_found(client, user):
    pair = await login(client, user)
    sid = _claims(pair["access"])["sid"]
    response = await client.delete(f"/api/auth/sessions/{sid}%0A", headers=bearer(pair["access"]))
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "not_found"
    assert (await client.get("/api/auth/me", headers=bearer(pair["access"]))).status_code == 200

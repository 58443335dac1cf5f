"""Token decoding: every forged, broken, expired or wrong-type token is a 401 on every door.

Each case is sent three ways, as a Bearer header (``/api/auth/me``), as the body of
``/api/auth/verify`` and as the body of ``/api/auth/refresh``, and each must be refused
with ``token_not_valid`` and an RFC 6750 ``invalid_token`` challenge.
"""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from authapi import keys, tokens
from tests.conftest import bearer, login


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sign(payload: dict, *, headers: dict | None = None) -> str:
    key = keys.get().current
    return jwt.encode(
        payload, key.signing, algorithm=key.algorithm, headers={"kid": key.kid, **(headers or {})}
    )


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


async def _assert_refused(client, token: str, *, as_refresh: bool = False) -> None:
    """The token is refused as a Bearer header, by verify, and (when asked) by refresh."""
    header = {"Authorization": f"Bearer {token}".encode()}  # bytes: non-ASCII junk too
    me = await client.get("/api/auth/me", headers=header)
    assert me.status_code == 401, me.text
    assert me.json()["code"] == "token_not_valid"
    assert 'error="invalid_token"' in me.headers["WWW-Authenticate"]
    verified = await client.post("/api/auth/verify", json={"token": token})
    assert verified.status_code == 401, verified.text
    assert verified.json()["code"] == "token_not_valid"
    assert 'error="invalid_token"' in verified.headers["WWW-Authenticate"]
    if as_refresh:
        refreshed = await client.post("/api/auth/refresh", json={"refresh": token})
        assert refreshed.status_code == 401, refreshed.text
        assert refreshed.json()["code"] == "token_not_valid"


async def test_valid_access_token_passes_all_doors(client, user):
    pair = await login(client, user)
    assert (await client.get("/api/auth/me", headers=bearer(pair["access"]))).status_code == 200
    verified = await client.post("/api/auth/verify", json={"token": pair["access"]})
    assert verified.status_code == 200


async def test_alg_none_is_refused(client, user):
    pair = await login(client, user)
    claims = _claims(pair["access"])
    header = {"alg": "none", "typ": "JWT", "kid": keys.get().current.kid}
    forged = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."
    await _assert_refused(client, forged)


async def test_tampered_payload_is_refused(client, make_user, user):
    other = await make_user()
    pair = await login(client, user)
    head, _, sig = pair["access"].split(".")
    claims = _claims(pair["access"]) | {"user_id": other.pk}
    forged = f"{head}.{_b64(json.dumps(claims).encode())}.{sig}"
    await _assert_refused(client, forged)


async def test_tampered_signature_is_refused(client, user):
    pair = await login(client, user)
    head, body, sig = pair["refresh"].split(".")
    flipped = sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB")
    await _assert_refused(client, f"{head}.{body}.{flipped}", as_refresh=True)


async def test_token_signed_with_another_secret_is_refused(client, user):
    pair = await login(client, user)
    claims = _claims(pair["access"])
    forged = jwt.encode(
        claims, "another-secret-" + "y" * 40, algorithm="HS256",
        headers={"kid": keys.get().current.kid},
    )  # fmt: skip
    await _assert_refused(client, forged)


@pytest.mark.parametrize(
    "garbage",
    ["x", "a.b", "a.b.c", "....", "Bearer", "e30.e30.", "ä.ö.ü"],
    ids=["one-part", "two-parts", "junk-parts", "dots", "word", "empty-json", "non-ascii"],
)
async def test_malformed_tokens_are_refused(client, garbage):
    await _assert_refused(client, garbage, as_refresh=True)


async def test_oversized_token_is_refused(client):
    huge = "x" * 9000
    me = await client.get("/api/auth/me", headers=bearer(huge))
    assert me.status_code == 401 and me.json()["code"] == "token_not_valid"
    verified = await client.post("/api/auth/verify", json={"token": huge})
    assert verified.status_code == 422 and verified.json()["code"] == "invalid"


@pytest.mark.parametrize("claim", list(tokens.REQUIRED))
async def test_each_missing_claim_is_refused(client, user, claim):
    pair = await login(client, user)
    access = _claims(pair["access"])
    del access[claim]
    await _assert_refused(client, _sign(access))
    refresh = _claims(pair["refresh"])
    del refresh[claim]
    await _assert_refused(client, _sign(refresh), as_refresh=True)


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("exp", "tomorrow"), ("iat", None), ("exp", True), ("jti", 12345), ("jti", "short"),
        ("sid", ""), ("sid", "../../etc"), ("user_id", None), ("user_id", ""),
        ("user_id", [1]), ("token_type", "id"), ("token_type", None),
    ],
)  # fmt: skip
async def test_malformed_claims_are_refused(client, user, claim, value):
    pair = await login(client, user)
    access = _claims(pair["access"]) | {claim: value}
    await _assert_refused(client, _sign(access))


async def test_missing_kid_is_refused(client, user):
    pair = await login(client, user)
    key = keys.get().current
    bare = jwt.encode(_claims(pair["access"]), key.signing, algorithm=key.algorithm)
    assert "kid" not in jwt.get_unverified_header(bare)
    await _assert_refused(client, bare)


async def test_unknown_kid_is_refused(client, user):
    pair = await login(client, user)
    forged = _sign(_claims(pair["access"]), headers={"kid": "someone-elses-key"})
    await _assert_refused(client, forged)


async def test_non_string_kid_is_refused(client, user):
    pair = await login(client, user)
    head, body, sig = pair["access"].split(".")
    header = jwt.get_unverified_header(pair["access"]) | {"kid": ["a"]}
    forged = f"{_b64(json.dumps(header).encode())}.{body}.{sig}"
    await _assert_refused(client, forged)


async def test_refresh_token_is_not_an_access_token(client, user):
    pair = await login(client, user)
    response = await client.get("/api/auth/me", headers=bearer(pair["refresh"]))
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"
    for path in ("/demo/async", "/demo/sync", "/bare/async"):
        demo = await client.get(path, headers=bearer(pair["refresh"]))
        assert demo.status_code == 401, (path, demo.text)
        assert demo.json()["code"] == "token_not_valid"


async def test_access_token_is_not_a_refresh_token(client, user):
    pair = await login(client, user)
    response = await client.post("/api/auth/refresh", json={"refresh": pair["access"]})
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"
    logout = await client.post("/api/auth/logout", json={"refresh": pair["access"]})
    assert logout.status_code == 401
    # nothing was spent or revoked by the refused attempts
    assert (await client.get("/api/auth/me", headers=bearer(pair["access"]))).status_code == 200
    assert (await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})).is_success


async def test_access_token_expires_to_the_second(client, user, clock):
    pair = await login(client, user)
    claims = _claims(pair["access"])
    clock.shift(claims["exp"] - time.time() - 1)
    assert (await client.get("/api/auth/me", headers=bearer(pair["access"]))).status_code == 200
    clock.shift(1.01)
    response = await client.get("/api/auth/me", headers=bearer(pair["access"]))
    assert response.status_code == 401
    assert response.json()["detail"] == "Token is expired"


async def test_expired_refresh_token_is_refused_and_spends_nothing(client, user, clock):
    pair = await login(client, user)
    exp = _claims(pair["refresh"])["exp"]
    clock.shift(exp - time.time() + 1)
    await _assert_refused(client, pair["refresh"], as_refresh=True)


async def test_token_from_the_future_is_refused(client, user):
    pair = await login(client, user)
    claims = _claims(pair["access"])
    claims["iat"] = int(time.time()) + 120
    await _assert_refused(client, _sign(claims))


async def test_forged_token_with_a_new_jti_for_a_live_session_still_needs_our_key(client, user):
    """A fresh jti cannot dodge revocation: the signature is what lets a token in at all."""
    pair = await login(client, user)
    claims = _claims(pair["access"]) | {"jti": tokens.new_id()}
    guess = "a-guessed-secret-of-a-decent-length-000"
    forged = jwt.encode(claims, guess, algorithm="HS256", headers={"kid": keys.get().current.kid})
    await _assert_refused(client, forged)

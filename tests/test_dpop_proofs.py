"""authapi.dpop.verify against proofs from an independent generator (tests/dpop_client.py):
every algorithm accepted, and every way a thief or a broken client gets one wrong refused
with DPoPInvalid, never another exception."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from authapi import dpop
from authapi.errors import DPoPInvalid, DPoPNonceNeeded
from tests.dpop_client import Key, b64, compact

URL = "https://api.example.com/api/auth/me"
TOKEN = "aaa.bbb.ccc"
KEYS = {alg: Key(alg) for alg in dpop.ALGORITHMS}


def check(proof, *, method="GET", uri=URL, token=TOKEN, **kw):
    return dpop.verify(proof, method=method, uri=uri, access_token=token, **kw)


@pytest.mark.parametrize("alg", dpop.ALGORITHMS)
def test_each_algorithm_gives_the_keys_thumbprint(alg):
    key = KEYS[alg]
    proof = key.proof("GET", URL, token=TOKEN)
    result = check(proof)
    assert result.jkt == key.thumbprint
    assert len(result.jti) > 10


def test_rfc7638_example_thumbprint():
    # RFC 7638 §3.1's key and its thumbprint.
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSo"
        "c_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0"
        "_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI"
        "4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert dpop.thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_the_uri_compares_normalised_and_without_query():
    key = KEYS["ES256"]
    proof = key.proof("GET", "HTTPS://API.example.com:443/api/auth/me", token=TOKEN)
    assert check(proof, uri="https://api.example.com/api/auth/me?x=1").jkt == key.thumbprint
    with pytest.raises(DPoPInvalid):
        check(key.proof("GET", URL, token=TOKEN), uri="https://api.example.com/api/auth/me/")


BAD = {
    "another method": lambda k: k.proof("POST", URL, token=TOKEN),
    "another path": lambda k: k.proof(
        "GET", "https://api.example.com/api/auth/sessions", token=TOKEN
    ),
    "another host": lambda k: k.proof("GET", "https://evil.example.com/api/auth/me", token=TOKEN),
    "another scheme": lambda k: k.proof("GET", "http://api.example.com/api/auth/me", token=TOKEN),
    "another port": lambda k: k.proof(
        "GET", "https://api.example.com:8443/api/auth/me", token=TOKEN
    ),
    "another token": lambda k: k.proof("GET", URL, token="xxx.yyy.zzz"),
    "no ath": lambda k: k.proof("GET", URL),
    "stale iat": lambda k: k.proof("GET", URL, token=TOKEN, iat=time.time() - 120),
    "future iat": lambda k: k.proof("GET", URL, token=TOKEN, iat=time.time() + 120),
    "string iat": lambda k: k.proof("GET", URL, token=TOKEN, claims={"iat": str(int(time.time()))}),
    "bool iat": lambda k: k.proof("GET", URL, token=TOKEN, claims={"iat": True}),
    "no jti": lambda k: k.proof("GET", URL, token=TOKEN, drop=("jti",)),
    "no htm": lambda k: k.proof("GET", URL, token=TOKEN, drop=("htm",)),
    "no htu": lambda k: k.proof("GET", URL, token=TOKEN, drop=("htu",)),
    "no iat": lambda k: k.proof("GET", URL, token=TOKEN, drop=("iat",)),
    "huge jti": lambda k: k.proof("GET", URL, token=TOKEN, claims={"jti": "j" * 500}),
    "numeric jti": lambda k: k.proof("GET", URL, token=TOKEN, claims={"jti": 12345}),
    "htu not a string": lambda k: k.proof("GET", URL, token=TOKEN, claims={"htu": ["x"]}),
    "typ JWT": lambda k: k.proof("GET", URL, token=TOKEN, header={"typ": "JWT"}),
    "typ at+jwt": lambda k: k.proof("GET", URL, token=TOKEN, header={"typ": "at+jwt"}),
    "no typ": lambda k: k.proof("GET", URL, token=TOKEN, header={"typ": None}),
    "no jwk": lambda k: k.proof("GET", URL, token=TOKEN, header={"jwk": None}),
    "jwk with private d": lambda k: k.proof("GET", URL, token=TOKEN, header={"jwk": k.private_jwk}),
    "jwk a string": lambda k: k.proof("GET", URL, token=TOKEN, header={"jwk": "key"}),
    "jwk of another key": lambda k: k.proof("GET", URL, token=TOKEN, header={"jwk": Key().jwk}),
    "alg mismatching the key": lambda k: k.proof("GET", URL, token=TOKEN, header={"alg": "ES384"}),
}


@pytest.mark.parametrize("case", BAD)
def test_a_wrong_proof_is_refused(case):
    with pytest.raises(DPoPInvalid):
        check(BAD[case](KEYS["ES256"]))


def _unsigned(header, claims):
    return compact(header, claims, lambda data: b"")


def test_alg_none_is_refused():
    key = KEYS["ES256"]
    head = {"typ": "dpop+jwt", "alg": "none", "jwk": key.jwk}
    claims = {"jti": "a" * 16, "htm": "GET", "htu": URL, "iat": int(time.time())}
    with pytest.raises(DPoPInvalid, match="alg"):
        check(_unsigned(head, claims) + "c2ln")


def test_hmac_with_the_public_key_as_secret_is_refused():
    key = KEYS["RS256"]
    head = {"typ": "dpop+jwt", "alg": "HS256", "jwk": key.jwk}
    claims = {"jti": "b" * 16, "htm": "GET", "htu": URL, "iat": int(time.time()), "ath": ""}
    secret = json.dumps(key.jwk).encode()
    proof = compact(head, claims, lambda data: hmac.new(secret, data, hashlib.sha256).digest())
    with pytest.raises(DPoPInvalid, match="alg"):
        check(proof)


def test_a_signature_by_another_key_is_refused():
    thief, victim = Key(), KEYS["ES256"]
    head = {"typ": "dpop+jwt", "alg": "ES256", "jwk": victim.jwk}
    claims = {"jti": "c" * 16, "htm": "GET", "htu": URL, "iat": int(time.time())}
    with pytest.raises(DPoPInvalid, match="signature"):
        check(compact(head, claims, thief.sign), token=None)


def test_a_huge_jwk_or_proof_is_refused_before_any_crypto():
    key = KEYS["ES256"]
    padded = {**key.jwk, "pad": "x" * 5000}
    with pytest.raises(DPoPInvalid, match="malformed"):
        check(key.proof("GET", URL, token=TOKEN, header={"jwk": padded}))


def test_a_small_rsa_key_is_refused():
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = Key("RS256")
    key.private = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(DPoPInvalid, match="2048"):
        check(key.proof("GET", URL, token=TOKEN))


@pytest.mark.parametrize(
    "junk",
    ["", "a.b", "a.b.c", "..", "a" * 5000, None, 42, "eyJ0eXAiOiJkcG9wK2p3dCJ9.e30.", "é.é.é"],
)
def test_junk_is_refused_cleanly(junk):
    with pytest.raises(DPoPInvalid):
        check(junk)


def test_garbage_jwk_members_are_refused_cleanly():
    key = KEYS["ES256"]
    for jwk in (
        {"kty": "EC", "crv": "P-256", "x": "!!", "y": "??"},
        {"kty": "EC", "crv": "P-256", "x": b64(b"\x00" * 32), "y": b64(b"\x00" * 32)},
        {"kty": "EC", "crv": "P-256", "x": 1, "y": 2},
        {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
        {"kty": "oct", "k": "c2VjcmV0"},
        {},
    ):
        with pytest.raises(DPoPInvalid):
            check(key.proof("GET", URL, token=TOKEN, header={"jwk": jwk}))


def test_nonces_rotate_and_are_demanded():
    secret = b"s" * 32
    current, previous = dpop.nonces(secret, 300, now=1_000_000)
    assert dpop.nonces(secret, 300, now=1_000_300)[1] == current
    key = KEYS["ES256"]
    with pytest.raises(DPoPNonceNeeded) as caught:
        check(key.proof("GET", URL, token=TOKEN), nonces=(current, previous))
    assert caught.value.extra_headers["DPoP-Nonce"] == current
    with pytest.raises(DPoPNonceNeeded):
        check(key.proof("GET", URL, token=TOKEN, nonce="forged"), nonces=(current, previous))
    for nonce in (current, previous):
        assert check(key.proof("GET", URL, token=TOKEN, nonce=nonce), nonces=(current, previous))

"""Algorithms, kid, JWKS, key rotation, confusion attacks, iss/aud/leeway, genkey."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from authapi import keys
from tests.conftest import LiveServer, bearer, login

ASYMMETRIC = ["RS256", "PS256", "ES256", "EdDSA"]
HMAC = ["HS256", "HS384", "HS512"]
SECRETS = {"HS256": "s" * 32, "HS384": "t" * 48, "HS512": "u" * 64}
_KEY_DIR = Path(os.environ["AUTHAPI_DATA_DIR"]) / "test-keys"


def _private(algorithm: str):
    if algorithm in {"RS256", "PS256"}:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def write_key(algorithm: str, name: str) -> str:
    """A fresh PEM private key file for ``algorithm``; returns its path."""
    _KEY_DIR.mkdir(parents=True, exist_ok=True)
    path = _KEY_DIR / f"{name}-{algorithm}-{time.time_ns()}.pem"
    pem = _private(algorithm).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    return str(path)


def _load(path: str) -> Any:
    return serialization.load_pem_private_key(Path(path).read_bytes(), password=None)


def _public_pem(path: str) -> bytes:
    private = _load(path)
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _header(token: str) -> dict:
    return jwt.get_unverified_header(token)


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


async def _status(client, access: str) -> int:
    return (await client.get("/api/auth/me", headers=bearer(access))).status_code


def _key_settings(algorithm: str) -> dict:
    if algorithm in HMAC:
        return {"ALGORITHM": algorithm, "SIGNING_KEY": SECRETS[algorithm]}
    return {"ALGORITHM": algorithm, "SIGNING_KEY": write_key(algorithm, "current")}


# --- every algorithm ----------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", HMAC + ASYMMETRIC)
async def test_round_trip(client, user, authapi_settings, algorithm):
    with authapi_settings(**_key_settings(algorithm)):
        pair = await login(client, user)
        header = _header(pair["access"])
        assert header["alg"] == algorithm
        assert header["kid"] == keys.get().current.kid
        assert _header(pair["refresh"])["kid"] == header["kid"]
        assert await _status(client, pair["access"]) == 200
        nxt = await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
        assert nxt.status_code == 200
        verified = await client.post("/api/auth/verify", json={"token": nxt.json()["access"]})
        assert verified.status_code == 200


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
async def test_kid_is_the_rfc7638_thumbprint(client, authapi_settings, algorithm):
    with authapi_settings(**_key_settings(algorithm)):
        document = (await client.get("/.well-known/jwks.json")).json()
        (jwk,) = document["keys"]
        members = {
            "RSA": ("e", "kty", "n"),
            "EC": ("crv", "kty", "x", "y"),
            "OKP": ("crv", "kty", "x"),
        }
        required = {name: jwk[name] for name in members[jwk["kty"]]}
        canonical = json.dumps(required, separators=(",", ":"), sort_keys=True).encode()
        import hashlib

        assert jwk["kid"] == _b64(hashlib.sha256(canonical).digest())
        assert keys.get().current.kid == jwk["kid"]


@pytest.mark.parametrize("algorithm", HMAC)
async def test_hmac_kid_is_stable_and_reveals_nothing(authapi_settings, algorithm):
    with authapi_settings(**_key_settings(algorithm)):
        kid = keys.get().current.kid
    with authapi_settings(**_key_settings(algorithm)):
        assert keys.get().current.kid == kid
    assert SECRETS[algorithm] not in kid and kid.startswith("hs-")
    with authapi_settings(ALGORITHM=algorithm, SIGNING_KEY=SECRETS[algorithm] + "x"):
        assert keys.get().current.kid != kid


# --- JWKS -------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
async def test_jwks_publishes_public_keys_only(client, authapi_settings, algorithm):
    with authapi_settings(**_key_settings(algorithm), JWKS_MAX_AGE=600):
        response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert "max-age=600" in response.headers["Cache-Control"]
    (jwk,) = response.json()["keys"]
    assert jwk["alg"] == algorithm and jwk["use"] == "sig" and jwk["kid"]
    assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & set(jwk)


async def test_jwks_is_404_json_for_hmac(client):
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


async def test_jwks_lists_current_then_previous(client, authapi_settings):
    old, new = write_key("ES256", "old"), write_key("EdDSA", "new")
    with authapi_settings(ALGORITHM="EdDSA", SIGNING_KEY=new, PREVIOUS_KEYS=f"ES256:{old}"):
        document = (await client.get("/.well-known/jwks.json")).json()
    assert [k["alg"] for k in document["keys"]] == ["EdDSA", "ES256"]


async def test_a_third_party_verifies_our_tokens_with_pyjwkclient(user):
    """PyJWT's PyJWKClient against the live JWKS of a running server, as a resource server."""
    import httpx

    path = write_key("ES256", "live")
    env = {"AUTHAPI_ALGORITHM": "ES256", "AUTHAPI_SIGNING_KEY": path}
    with LiveServer(env=env) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            response = await http.post(
                "/api/auth/login",
                json={"username": user.username, "password": "correct horse battery"},
            )
            assert response.status_code == 200, response.text
            access = response.json()["access"]

        def verify() -> dict:
            client = jwt.PyJWKClient(f"{server.url}/.well-known/jwks.json")
            signing_key = client.get_signing_key_from_jwt(access)
            return jwt.decode(access, signing_key.key, algorithms=["ES256"])

        claims = await asyncio.to_thread(verify)
    assert claims["user_id"] == user.pk and claims["token_type"] == "access"


# --- rotation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old_alg", "new_alg"),
    [("EdDSA", "EdDSA"), ("RS256", "ES256"), ("HS256", "EdDSA"), ("HS256", "HS256")],
)
async def test_rotation_story(client, user, authapi_settings, old_alg, new_alg):
    old = _key_settings(old_alg)
    new = _key_settings(new_alg)
    if new_alg in HMAC:
        new["SIGNING_KEY"] = "v" * 40
    previous = old["SIGNING_KEY"] if old_alg == new_alg else f"{old_alg}:{old['SIGNING_KEY']}"
    with authapi_settings(**old):
        before = await login(client, user)
        spare = await login(client, user)
        old_kid = keys.get().current.kid
    # 1. roll the new key in, the old one kept for verification
    with authapi_settings(**new, PREVIOUS_KEYS=previous):
        new_kid = keys.get().current.kid
        assert new_kid != old_kid
        assert await _status(client, before["access"]) == 200
        nxt = await client.post("/api/auth/refresh", json={"refresh": before["refresh"]})
        assert nxt.status_code == 200
        after = nxt.json()
        assert _header(after["access"])["kid"] == new_kid
        assert _header(after["refresh"])["kid"] == new_kid
        assert _header(after["access"])["alg"] == new_alg
    # 2. drop the old key: its tokens are refused, the new ones live on
    with authapi_settings(**new):
        assert await _status(client, spare["access"]) == 401
        refused = await client.post("/api/auth/refresh", json={"refresh": spare["refresh"]})
        assert refused.status_code == 401
        assert refused.json()["detail"] == "Token is signed by an unknown key"
        assert await _status(client, after["access"]) == 200
        assert (
            await client.post("/api/auth/refresh", json={"refresh": after["refresh"]})
        ).is_success


async def test_unknown_kid_is_refused_without_trying_every_key(client, user, authapi_settings):
    paths = [write_key("EdDSA", f"prev{i}") for i in range(3)]
    with authapi_settings(
        ALGORITHM="EdDSA", SIGNING_KEY=write_key("EdDSA", "cur"), PREVIOUS_KEYS=",".join(paths)
    ):
        pair = await login(client, user)
        # a token signed by a previous key but naming another kid: one key is tried, the named one
        signer = _load(paths[0])
        claims = _claims(pair["access"])
        forged = jwt.encode(
            claims, signer, algorithm="EdDSA", headers={"kid": keys.get().current.kid}
        )
        assert await _status(client, forged) == 401
        unknown = jwt.encode(claims, signer, algorithm="EdDSA", headers={"kid": "nope"})
        assert await _status(client, unknown) == 401
        named = jwt.encode(
            claims,
            signer,
            algorithm="EdDSA",
            headers={"kid": keys.thumbprint(keys._public_jwk(signer.public_key()))},
        )
        assert await _status(client, named) == 200


# --- algorithm confusion --------------------------------------------------------------------


def _forge(header: dict, claims: dict, key: bytes, digest: str = "sha256") -> str:
    import hashlib
    import hmac

    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), getattr(hashlib, digest)).digest()
    return f"{signing_input}.{_b64(signature)}"


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
async def test_hs256_signed_with_our_public_key_is_refused(
    client, user, authapi_settings, algorithm
):
    settings_ = _key_settings(algorithm)
    with authapi_settings(**settings_):
        pair = await login(client, user)
        kid = keys.get().current.kid
        public_pem = _public_pem(settings_["SIGNING_KEY"])
        jwks = (await client.get("/.well-known/jwks.json")).text.encode()
        for secret in (public_pem, public_pem.strip(), jwks):
            forged = _forge(
                {"alg": "HS256", "typ": "JWT", "kid": kid}, _claims(pair["access"]), secret
            )
            assert await _status(client, forged) == 401
            verified = await client.post("/api/auth/verify", json={"token": forged})
            assert verified.status_code == 401


@pytest.mark.parametrize("algorithm", ASYMMETRIC + HMAC)
async def test_alg_none_is_refused_for_every_algorithm(client, user, authapi_settings, algorithm):
    with authapi_settings(**_key_settings(algorithm)):
        pair = await login(client, user)
        kid = keys.get().current.kid
        for alg in ("none", "None", "NONE", ""):
            header = _b64(json.dumps({"alg": alg, "kid": kid}).encode())
            body = _b64(json.dumps(_claims(pair["access"])).encode())
            assert await _status(client, f"{header}.{body}.") == 401


@pytest.mark.parametrize(
    ("current", "other", "other_alg"),
    [("PS256", None, "RS256"), ("EdDSA", "ES256", "ES256")],
    ids=["rs256-under-a-ps256-kid", "es256-under-an-eddsa-kid"],
)
async def test_a_signature_of_another_algorithm_under_our_kid_is_refused(
    client, user, authapi_settings, current, other, other_alg
):
    """The kid pins one algorithm: same RSA key material signed RS256 under a PS256 kid,
    or a still-accepted ES256 key's signature under the current EdDSA kid."""
    path = write_key(current, "current")
    values = {"ALGORITHM": current, "SIGNING_KEY": path}
    signer_path = path
    if other:
        signer_path = write_key(other, "previous")
        values["PREVIOUS_KEYS"] = f"{other}:{signer_path}"
    with authapi_settings(**values):
        pair = await login(client, user)
        kid = keys.get().current.kid
        forged = jwt.encode(
            _claims(pair["access"]), _load(signer_path), algorithm=other_alg, headers={"kid": kid}
        )
        assert await _status(client, forged) == 401


async def test_embedded_jwk_and_jku_headers_are_ignored(client, user, authapi_settings):
    with authapi_settings(ALGORITHM="EdDSA", SIGNING_KEY=write_key("EdDSA", "ed")):
        pair = await login(client, user)
        attacker = ed25519.Ed25519PrivateKey.generate()
        jwk = keys._public_jwk(attacker.public_key())
        for extra in ({"jwk": jwk}, {"jku": "http://127.0.0.1:1/jwks.json"}, {"x5u": "http://x"}):
            forged = jwt.encode(
                _claims(pair["access"]), attacker, algorithm="EdDSA",
                headers={"kid": keys.get().current.kid, **extra},
            )  # fmt: skip
            assert await _status(client, forged) == 401


async def test_hmac_token_is_refused_when_the_service_is_asymmetric(client, user, authapi_settings):
    with authapi_settings(ALGORITHM="HS256", SIGNING_KEY=SECRETS["HS256"]):
        hmac_pair = await login(client, user)
    with authapi_settings(ALGORITHM="EdDSA", SIGNING_KEY=write_key("EdDSA", "ed")):
        assert await _status(client, hmac_pair["access"]) == 401


# --- issuer, audience, leeway ------------------------------------------------------------


async def test_issuer_and_audience_are_set_and_checked(client, user, authapi_settings):
    with authapi_settings(ISSUER="https://auth.example", AUDIENCE="api-a,api-b"):
        pair = await login(client, user)
        claims = _claims(pair["access"])
        assert claims["iss"] == "https://auth.example"
        assert claims["aud"] == ["api-a", "api-b"]
        assert await _status(client, pair["access"]) == 200
        key = keys.get().current
        for bad in (
            {"iss": "https://evil.example"},
            {"aud": "api-c"},
            {"aud": ["api-c", "api-d"]},
        ):
            forged = jwt.encode(
                claims | bad, key.signing, algorithm=key.algorithm, headers={"kid": key.kid}
            )
            assert await _status(client, forged) == 401
        for missing in ("iss", "aud"):
            stripped = {k: v for k, v in claims.items() if k != missing}
            forged = jwt.encode(
                stripped, key.signing, algorithm=key.algorithm, headers={"kid": key.kid}
            )
            response = await client.get("/api/auth/me", headers=bearer(forged))
            assert response.status_code == 401
            assert missing in response.json()["detail"]
    with authapi_settings(AUDIENCE="api-a"):
        single = await login(client, user)
        assert _claims(single["access"])["aud"] == "api-a"
        # a token for api-a and api-b serves api-a; one for api-b alone does not
        assert await _status(client, pair["access"]) == 200
        key = keys.get().current
        other = _claims(single["access"]) | {"aud": "api-b"}
        forged = jwt.encode(other, key.signing, algorithm=key.algorithm, headers={"kid": key.kid})
        assert await _status(client, forged) == 401


async def test_leeway_allows_that_much_clock_skew_and_no_more(
    client, user, clock, authapi_settings
):
    with authapi_settings(LEEWAY=30, ACCESS_TOKEN_LIFETIME=60):
        pair = await login(client, user)
        clock.shift(60 + 20)  # expired 20 s ago: inside the leeway
        assert await _status(client, pair["access"]) == 200
        clock.shift(15)  # 35 s ago: outside
        assert await _status(client, pair["access"]) == 401
    with authapi_settings(ACCESS_TOKEN_LIFETIME=60):  # no leeway: not a second over
        clock.offset = 0
        pair = await login(client, user)
        clock.shift(61)
        assert await _status(client, pair["access"]) == 401


async def test_iat_in_the_future_is_allowed_only_within_leeway(client, user, authapi_settings):
    with authapi_settings(LEEWAY=30):
        pair = await login(client, user)
        key = keys.get().current
        claims = _claims(pair["access"])
        for ahead, status in ((20, 200), (60, 401)):
            early = claims | {"iat": int(time.time()) + ahead}
            token = jwt.encode(
                early, key.signing, algorithm=key.algorithm, headers={"kid": key.kid}
            )
            assert await _status(client, token) == status


async def test_rotating_django_secret_key_keeps_asymmetric_sessions(client, user, authapi_settings):
    """With a PEM signing key, SECRET_KEY signs nothing of ours: changing it ends nothing."""
    from django.test import override_settings

    with authapi_settings(**_key_settings("EdDSA")):
        pair = await login(client, user)
        with override_settings(SECRET_KEY="a-brand-new-django-secret-" + "z" * 40):
            refreshed = await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
            assert refreshed.status_code == 200, refreshed.text
            assert await _status(client, refreshed.json()["access"]) == 200


# --- rotating away from the key derived from DJANGO_SECRET_KEY --------------------------


async def test_moving_from_the_derived_key_to_a_signing_key_logs_nobody_out(
    client, user, authapi_settings
):
    pair = await login(client, user)  # signed with the key derived from SECRET_KEY
    new = "a-new-hmac-signing-secret-" + "q" * 40
    with authapi_settings(SIGNING_KEY=new):
        assert await _status(client, pair["access"]) == 401  # not named: not accepted
    with authapi_settings(SIGNING_KEY=new, PREVIOUS_KEYS="derived"):
        assert await _status(client, pair["access"]) == 200
        turned = await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
        assert turned.status_code == 200, turned.text
        fresh = turned.json()["access"]
        assert (
            jwt.get_unverified_header(fresh)["kid"]
            != jwt.get_unverified_header(pair["access"])["kid"]
        )
    with authapi_settings(SIGNING_KEY=new):  # the derived key dropped: the new pair lives on
        assert await _status(client, fresh) == 200
        assert await _status(client, pair["access"]) == 401


async def test_an_algorithm_change_names_the_derived_key_with_its_algorithm(
    client, user, authapi_settings
):
    pair = await login(client, user)
    with authapi_settings(**_key_settings("ES256"), PREVIOUS_KEYS="HS256:derived"):
        assert await _status(client, pair["access"]) == 200


async def test_django_secret_key_rotates_with_its_fallbacks(client, user):
    from django.conf import settings
    from django.test import override_settings

    pair = await login(client, user)
    old = settings.SECRET_KEY
    with override_settings(SECRET_KEY="rotated-django-secret-" + "w" * 40):
        assert await _status(client, pair["access"]) == 401
    with override_settings(
        SECRET_KEY="rotated-django-secret-" + "w" * 40, SECRET_KEY_FALLBACKS=[old]
    ):
        assert await _status(client, pair["access"]) == 200
        turned = await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
        assert turned.status_code == 200


def test_derived_is_only_an_hmac_key():
    from authapi import conf, keys

    with pytest.raises(keys.KeyConfigError, match="HS256:derived"):
        keys.build(
            conf.from_mapping({**_key_settings("ES256"), "PREVIOUS_KEYS": "derived"}), "x" * 50
        )


def test_genkey_advice_names_the_derived_key(capsys):
    from django.core.management import call_command

    call_command("authapi", "genkey", "--algorithm", "HS256")
    out = capsys.readouterr().out
    assert "AUTHAPI_PREVIOUS_KEYS=HS256:derived" in out

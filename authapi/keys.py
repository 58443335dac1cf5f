"""Signing and verification keys: loading, ``kid``, the JWKS document, new key generation.

HMAC keys come from ``AUTHAPI_SIGNING_KEY`` (or are derived from ``SECRET_KEY``);
asymmetric keys are PEM files (or inline PEM text). Earlier keys from
``AUTHAPI_PREVIOUS_KEYS`` are kept for verification only, found by ``kid``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from authapi import conf

_HMAC_DIGESTS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
_THUMBPRINT_MEMBERS = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
}
MIN_RSA_BITS = 2048


class KeyConfigError(ImproperlyConfigured):
    """A key that cannot be used: names the setting and the fault, never the key."""


@dataclass(frozen=True)
class Key:
    kid: str
    algorithm: str
    verifying: Any = field(repr=False)
    signing: Any = field(default=None, repr=False)
    jwk: Mapping[str, str] | None = None


@dataclass(frozen=True)
class KeySet:
    current: Key
    by_kid: Mapping[str, Key]

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public keys, current first, as a JWK Set (RFC 7517)."""
        keys = [self.current, *(k for k in self.by_kid.values() if k is not self.current)]
        return {
            "keys": [
                {**k.jwk, "kid": k.kid, "alg": k.algorithm, "use": "sig"}
                for k in keys
                if k.jwk is not None
            ]
        }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(jwk: Mapping[str, str]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256) of a public JWK."""
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode()).digest())


def _hmac_key(algorithm: str, secret: bytes) -> Key:
    label = b"authapi key id " + algorithm.encode()
    kid = "hs-" + _b64(hmac.new(secret, label, hashlib.sha256).digest()[:12])
    return Key(kid=kid, algorithm=algorithm, verifying=secret, signing=secret)


def _public_jwk(public_key: Any) -> dict[str, str]:
    if isinstance(public_key, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public_key, as_dict=True)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public_key, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(public_key, as_dict=True)
    return {k: v for k, v in jwk.items() if k in {"kty", "crv", "n", "e", "x", "y"}}


def _check_family(algorithm: str, public_key: Any, name: str) -> None:
    if algorithm in {"RS256", "PS256"}:
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise KeyConfigError(f"{name} is not an RSA key, which {algorithm} needs.")
        if public_key.key_size < MIN_RSA_BITS:
            raise KeyConfigError(
                f"{name} is a {public_key.key_size}-bit RSA key; use {MIN_RSA_BITS}+."
            )
    elif algorithm == "ES256":
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
            public_key.curve, ec.SECP256R1
        ):
            raise KeyConfigError(f"{name} is not a P-256 EC key, which ES256 needs.")
    elif algorithm == "EdDSA" and not isinstance(public_key, ed25519.Ed25519PublicKey):
        raise KeyConfigError(f"{name} is not an Ed25519 key, which EdDSA needs.")


def _read_pem(value: str, name: str) -> bytes:
    if value.lstrip().startswith("-----BEGIN"):
        return value.encode()
    try:
        return Path(value).expanduser().read_bytes()
    except OSError as exc:
        raise KeyConfigError(
            f"{name}: cannot read the PEM file {value!r} ({exc.strerror})."
        ) from None


def _pem_key(algorithm: str, value: str, name: str, *, private: bool) -> Key:
    data = _read_pem(value, name)
    signing: Any = None
    try:
        signing = serialization.load_pem_private_key(data, password=None)
        public_key: Any = signing.public_key()
    except (ValueError, TypeError):
        if private:
            raise KeyConfigError(
                f"{name} is not an unencrypted PEM private key for {algorithm}."
            ) from None
        try:
            public_key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError):
            raise KeyConfigError(f"{name} is not a PEM public or private key.") from None
    except Exception as exc:  # unsupported key types raise UnsupportedAlgorithm
        raise KeyConfigError(f"{name} is not a usable PEM key ({type(exc).__name__}).") from None
    _check_family(algorithm, public_key, name)
    jwk = _public_jwk(public_key)
    return Key(
        kid=thumbprint(jwk), algorithm=algorithm, verifying=public_key, signing=signing, jwk=jwk
    )


def _hmac_secret(algorithm: str, value: str, name: str) -> Key:
    secret = value.encode()
    needed = _HMAC_DIGESTS[algorithm]().digest_size
    if len(secret) < needed:
        raise KeyConfigError(
            f"{name} is {len(secret)} bytes; {algorithm} needs at least {needed} (its hash output)."
        )
    return _hmac_key(algorithm, secret)


DERIVED = "derived"


def _previous_keys(algorithm: str, value: str, name: str, secret_keys: list[str]) -> list[Key]:
    """An earlier key: of the current algorithm, or of the one an ``ALG:`` prefix names
    (``HS256:<secret>``, ``RS256:/path/old.pem``) when the algorithm itself changed.
    ``derived`` (``HS256:derived``) is the key derived from DJANGO_SECRET_KEY (and its
    fallbacks), the default before AUTHAPI_SIGNING_KEY was set."""
    prefix, sep, rest = value.partition(":")
    if sep and prefix in conf.ALGORITHMS:
        algorithm, value = prefix, rest
    if value == DERIVED:
        if algorithm not in conf.HMAC_ALGORITHMS:
            raise KeyConfigError(f"{name}: only an HMAC key is derived; write HS256:derived.")
        return [_hmac_key(algorithm, derived_secret(algorithm, key)) for key in secret_keys]
    if algorithm in conf.HMAC_ALGORITHMS:
        return [_hmac_secret(algorithm, value, name)]
    return [_pem_key(algorithm, value, name, private=False)]


def derived_secret(algorithm: str, secret_key: str) -> bytes:
    """The HMAC key used when AUTHAPI_SIGNING_KEY is unset: derived from SECRET_KEY."""
    digest = _HMAC_DIGESTS[algorithm]
    return hmac.new(
        secret_key.encode(), b"authapi.signing-key." + algorithm.encode(), digest
    ).digest()


def build(cfg: conf.AuthSettings, secret_key: str, fallbacks: tuple[str, ...] = ()) -> KeySet:
    """Load the configured keys; KeyConfigError says which one is unusable and why.

    While the key is derived, keys derived from SECRET_KEY_FALLBACKS stay accepted, so
    DJANGO_SECRET_KEY rotates the Django way without logging anybody out.
    """
    algorithm = cfg.algorithm
    secret_keys = [secret_key, *fallbacks]
    previous: list[Key] = []
    if cfg.is_hmac:
        if cfg.signing_key is None:
            current = _hmac_key(algorithm, derived_secret(algorithm, secret_key))
            previous += [_hmac_key(algorithm, derived_secret(algorithm, k)) for k in fallbacks]
        else:
            current = _hmac_secret(algorithm, cfg.signing_key, "AUTHAPI_SIGNING_KEY")
    else:
        if cfg.signing_key is None:
            raise KeyConfigError(
                f"AUTHAPI_SIGNING_KEY must name a PEM private key file for {algorithm}. "
                f"Create one with: python manage.py authapi genkey --algorithm {algorithm}"
            )
        current = _pem_key(algorithm, cfg.signing_key, "AUTHAPI_SIGNING_KEY", private=True)
    for i, value in enumerate(cfg.previous_keys):
        previous += _previous_keys(algorithm, value, f"AUTHAPI_PREVIOUS_KEYS[{i}]", secret_keys)
    by_kid = {k.kid: k for k in previous}
    by_kid[current.kid] = current
    return KeySet(current=current, by_kid=by_kid)


@cache
def get() -> KeySet:
    """The key set in force, loaded once per configuration."""
    fallbacks = tuple(getattr(settings, "SECRET_KEY_FALLBACKS", ()) or ())
    return build(conf.get(), settings.SECRET_KEY, fallbacks)


conf.on_reset(get.cache_clear)


def generate_secret(algorithm: str) -> str:
    """A new random HMAC secret, twice as long as the algorithm's hash output."""
    return secrets.token_urlsafe(2 * _HMAC_DIGESTS[algorithm]().digest_size)


def generate_private_pem(algorithm: str) -> bytes:
    """A new unencrypted PKCS#8 PEM private key for an asymmetric algorithm."""
    private_key: Any
    if algorithm in {"RS256", "PS256"}:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    elif algorithm == "ES256":
        private_key = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == "EdDSA":
        private_key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"{algorithm} is not an asymmetric algorithm.")
    pem: bytes = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem

"""DPoP proofs (RFC 9449): what a ``DPoP`` header proves, checked without the store.

A proof is a JWT the client signs with its own private key for one request: header
``typ: dpop+jwt``, an asymmetric ``alg``, the public ``jwk``; claims ``jti``, ``htm`` (the
method), ``htu`` (the URI, no query or fragment), ``iat``, and ``ath`` (base64url SHA-256 of
the access token) when it comes with one. :func:`verify` checks all of it and returns the
key's RFC 7638 thumbprint (``jkt``) and the ``jti``; that the ``jti`` was never seen before
is the store's part (one ``SET NX`` beside the revocation read, same round trip).
``jwt.InvalidTokenError`` stops here, as in :mod:`authapi.tokens`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jwt
from cryptography.exceptions import InvalidSignature
from django.conf import settings
from django.http import HttpRequest

from authapi import conf
from authapi.errors import DPoPGrantInvalid, DPoPGrantNonce, DPoPInvalid, DPoPNonceNeeded

#: Asymmetric algorithms only: a proof's key is public, so HMAC would be forgeable.
ALGORITHMS = ("ES256", "ES384", "PS256", "RS256", "EdDSA")
MAX_PROOF_LENGTH = 4096  # an RSA-4096 key's proof is about 1.6 KiB
MAX_JTI_LENGTH = 128
#: A proof's ``iat`` may be this far from the server's clock, either way (seconds).
WINDOW = 60
#: How long a server nonce stays current (one more period it is still accepted).
NONCE_LIFETIME = 300
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_CURVES = {"ES256": ("EC", "P-256"), "ES384": ("EC", "P-384"), "EdDSA": ("OKP", "Ed25519")}
_RSA = {"PS256", "RS256"}
# RFC 7638 §3.2: the required members of each key type, the thumbprint's input.
_THUMB_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_SIGNERS = {alg: jwt.get_algorithm_by_name(alg) for alg in ALGORITHMS}
# Parsed public keys by (alg, RFC 7638 thumbprint): a client signs every request with one
# key, and making the key object costs as much as the rest of the check. Bounded.
_KEYS: dict[tuple[str, str], Any] = {}
_KEYS_MAX = 4096


@dataclass(frozen=True)
class Proof:
    jkt: str  # RFC 7638 thumbprint of the proof's key
    jti: str
    iat: int


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638: SHA-256 over the key's required members, sorted, without white space."""
    members = _THUMB_MEMBERS[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64(hashlib.sha256(canonical.encode()).digest())


def token_hash(token: str) -> str:
    """``ath``: base64url SHA-256 of the access token's ASCII bytes."""
    return b64(hashlib.sha256(token.encode("ascii")).digest())


def normalize_uri(uri: str) -> str:
    """Scheme and host lower case, default port dropped, no query or fragment (RFC 9449
    §4.3 with RFC 3986 §6.2.2-6.2.3 normalisation)."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is not None and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path or "/", "", ""))


def _part(segment: str) -> bytes:
    """One base64url segment (its characters already checked by ``_COMPACT``)."""
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise DPoPInvalid("The DPoP proof is malformed") from None


def _object(segment: str) -> dict[str, Any]:
    try:
        value = json.loads(_part(segment))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise DPoPInvalid("The DPoP proof is malformed") from None
    if not isinstance(value, dict):
        raise DPoPInvalid("The DPoP proof is malformed")
    return value


def _header(header: dict[str, Any]) -> str:
    if header.get("typ") != "dpop+jwt":
        raise DPoPInvalid("The DPoP proof's typ must be dpop+jwt")
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise DPoPInvalid(f"The DPoP proof's alg must be one of {', '.join(ALGORITHMS)}")
    if "crit" in header:  # RFC 7515 4.1.11: no extension is understood here
        raise DPoPInvalid("The DPoP proof's header has crit extensions")
    return str(alg)


def _public_key(header: dict[str, Any], alg: str) -> tuple[Any, dict[str, Any]]:
    jwk = header.get("jwk")
    if not isinstance(jwk, dict) or not all(isinstance(v, str) for v in jwk.values()):
        raise DPoPInvalid("The DPoP proof's header needs the public key as jwk")
    if _PRIVATE_MEMBERS & jwk.keys():
        raise DPoPInvalid("The DPoP proof's jwk holds private key material")
    kty = jwk.get("kty")
    if alg in _RSA:
        if kty != "RSA":
            raise DPoPInvalid("The DPoP proof's jwk does not fit its alg")
    elif (kty, jwk.get("crv")) != _CURVES[alg]:
        raise DPoPInvalid("The DPoP proof's jwk does not fit its alg")
    if not all(isinstance(jwk.get(m), str) for m in _THUMB_MEMBERS[str(kty)]):
        raise DPoPInvalid("The DPoP proof's jwk lacks a member")
    cache_key = (alg, thumbprint(jwk))
    key = _KEYS.get(cache_key)
    if key is None:
        try:
            key = jwt.PyJWK(jwk, algorithm=alg).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            raise DPoPInvalid("The DPoP proof's jwk is not a valid key") from None
        if alg in _RSA and not 2048 <= key.key_size <= 8192:
            raise DPoPInvalid("The DPoP proof's RSA key must have 2048 to 8192 bits")
        if len(_KEYS) >= _KEYS_MAX:
            _KEYS.clear()
        _KEYS[cache_key] = key
    return key, jwk


def verify(
    proof: Any,
    *,
    method: str,
    uri: str,
    access_token: str | None = None,
    nonces: tuple[str, ...] | None = None,
    leeway: int = 0,
    now: float | None = None,
) -> Proof:
    """Check one proof for one request; DPoPInvalid (or DPoPNonceNeeded) if it fails.

    ``nonces``: the server's current nonces (newest first) when nonces are on; the proof
    must carry one of them, else the answer names the newest (RFC 9449 §8).
    """
    if not isinstance(proof, str) or len(proof) > MAX_PROOF_LENGTH or not _COMPACT.fullmatch(proof):
        raise DPoPInvalid("The DPoP proof is malformed")
    head, body, signature = proof.split(".")
    header = _object(head)
    alg = _header(header)
    key, jwk = _public_key(header, alg)
    # The JWS by hand (RFC 7515 5.2): its characters are checked above, so nothing is
    # scanned twice; the signature by PyJWT's algorithm object (ES: raw r || s).
    try:
        valid = _SIGNERS[alg].verify(f"{head}.{body}".encode("ascii"), key, _part(signature))
    except (ValueError, TypeError, InvalidSignature):
        valid = False
    if not valid:
        raise DPoPInvalid("The DPoP proof's signature is invalid")
    claims = _object(body)
    if not {"jti", "htm", "htu", "iat"} <= claims.keys():
        raise DPoPInvalid("The DPoP proof's claims are malformed or missing")
    jti, htm, htu, iat = claims["jti"], claims["htm"], claims["htu"], claims["iat"]
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
        raise DPoPInvalid("The DPoP proof's jti is malformed")
    if htm != method:
        raise DPoPInvalid("The DPoP proof is for another method (htm)")
    if not isinstance(htu, str) or normalize_uri(htu) != normalize_uri(uri):
        raise DPoPInvalid("The DPoP proof is for another URI (htu)")
    if isinstance(iat, bool) or not isinstance(iat, int | float) or iat != iat:
        raise DPoPInvalid("The DPoP proof's iat must be a number")
    moment = time.time() if now is None else now
    if abs(moment - iat) > WINDOW + leeway:
        raise DPoPInvalid("The DPoP proof is stale or from the future (iat)")
    if access_token is not None:
        ath = claims.get("ath")
        if not isinstance(ath, str) or not hmac.compare_digest(ath, token_hash(access_token)):
            raise DPoPInvalid("The DPoP proof is for another access token (ath)")
    if nonces:
        sent = claims.get("nonce")
        if not isinstance(sent, str) or not any(hmac.compare_digest(sent, n) for n in nonces):
            raise DPoPNonceNeeded(nonces[0])
    return Proof(thumbprint(jwk), jti, int(iat))


def nonces(secret: bytes, lifetime: int, now: float | None = None) -> tuple[str, str]:
    """The current and the previous server nonce: an HMAC of the time window, so every
    worker and instance with the same secret agrees without the store."""
    window = int((time.time() if now is None else now) // lifetime)
    return tuple(  # type: ignore[return-value]
        b64(hmac.new(secret, f"dpop-nonce:{w}".encode(), hashlib.sha256).digest()[:18])
        for w in (window, window - 1)
    )


# --- proofs on requests -----------------------------------------------------------------


def proof_header(request: HttpRequest) -> str | None:
    """The request's one ``DPoP`` header; DPoPInvalid for several (Django joins them)."""
    value = request.headers.get("DPoP")
    if value is None:
        return None
    if "," in value:
        raise DPoPInvalid("Send exactly one DPoP header")
    return value.strip()


def request_uri(request: HttpRequest) -> str:
    """The URI as the client addressed it: behind a TLS proxy, the scheme Django trusts
    (``SECURE_PROXY_SSL_HEADER``), the host it validated, the path with any script prefix."""
    return request.build_absolute_uri(request.path)


def server_nonces() -> tuple[str, ...] | None:
    """The nonces a proof must carry now (``AUTHAPI_DPOP_NONCE``), else None."""
    if not conf.get().dpop_nonce:
        return None
    secret = hashlib.sha256(b"authapi-dpop-nonce\0" + settings.SECRET_KEY.encode()).digest()
    return nonces(secret, NONCE_LIFETIME)


def proof_ttl_ms() -> int:
    """How long a claimed jti is kept: as long as a proof of that age could be accepted."""
    return (2 * WINDOW + conf.get().leeway + 1) * 1000


def check_request(
    request: HttpRequest, *, access_token: str | None = None, required: bool
) -> Proof | None:
    """Verify the request's proof (for ``access_token`` when one is being used); None when
    there is none and none is ``required``."""
    value = proof_header(request)
    if value is None:
        if required:
            raise DPoPInvalid("This request needs a DPoP proof (the DPoP header)")
        return None
    return verify(
        value,
        method=request.method or "",
        uri=request_uri(request),
        access_token=access_token,
        nonces=server_nonces(),
        leeway=conf.get().leeway,
    )


def for_grant(request: HttpRequest, *, required: bool) -> Proof | None:
    """The proof of a login or refresh, whose failures answer 400 (RFC 9449 §5)."""
    try:
        return check_request(request, required=required)
    except DPoPNonceNeeded as exc:
        raise DPoPGrantNonce(exc.extra_headers["DPoP-Nonce"]) from None
    except DPoPInvalid as exc:
        raise DPoPGrantInvalid(exc.message) from None


def for_login(request: HttpRequest) -> Proof | None:
    """A login's proof under ``AUTHAPI_DPOP``: ignored when off, demanded when required;
    when optional, a login may come without one, but a proof that comes must hold."""
    mode = conf.get().dpop
    if mode == "off":
        return None
    return for_grant(request, required=mode == "required")

"""DPoP proofs made the way a client would, independently of the server's code: JOSE by hand
(base64url JSON, the signing input) and the signature straight from ``cryptography``, no
PyJWT. What a test changes (a claim, the header, the key) goes in as it would from a thief.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int(value: int, size: int | None = None) -> str:
    size = size or (value.bit_length() + 7) // 8
    return b64(value.to_bytes(size, "big"))


class Key:
    """A client's key pair: ``alg`` one of ES256, ES384, PS256, RS256, EdDSA."""

    def __init__(self, alg: str = "ES256") -> None:
        self.alg = alg
        if alg == "ES256":
            self.private: Any = ec.generate_private_key(ec.SECP256R1())
        elif alg == "ES384":
            self.private = ec.generate_private_key(ec.SECP384R1())
        elif alg in ("PS256", "RS256"):
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg == "EdDSA":
            self.private = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(alg)

    @property
    def jwk(self) -> dict[str, str]:
        public = self.private.public_key()
        if self.alg.startswith("ES"):
            numbers = public.public_numbers()
            size = 32 if self.alg == "ES256" else 48
            crv = "P-256" if self.alg == "ES256" else "P-384"
            return {"kty": "EC", "crv": crv, "x": _int(numbers.x, size), "y": _int(numbers.y, size)}
        if self.alg == "EdDSA":
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            return {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}
        numbers = public.public_numbers()
        return {"kty": "RSA", "n": _int(numbers.n), "e": _int(numbers.e)}

    @property
    def private_jwk(self) -> dict[str, str]:
        jwk = dict(self.jwk)
        if self.alg.startswith("ES"):
            jwk["d"] = _int(self.private.private_numbers().private_value)
        elif self.alg in ("PS256", "RS256"):
            jwk["d"] = _int(self.private.private_numbers().d)
        return jwk

    @property
    def thumbprint(self) -> str:
        """RFC 7638, computed here on its own."""
        jwk = self.jwk
        members = {
            "EC": ("crv", "kty", "x", "y"),
            "RSA": ("e", "kty", "n"),
            "OKP": ("crv", "kty", "x"),
        }
        picked = {m: jwk[m] for m in members[jwk["kty"]]}
        canonical = json.dumps(picked, separators=(",", ":"), sort_keys=True).encode()
        return b64(hashlib.sha256(canonical).digest())

    def sign(self, data: bytes) -> bytes:
        if self.alg.startswith("ES"):
            digest = hashes.SHA256() if self.alg == "ES256" else hashes.SHA384()
            r, s = decode_dss_signature(self.private.sign(data, ec.ECDSA(digest)))
            size = 32 if self.alg == "ES256" else 48
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        if self.alg == "EdDSA":
            return bytes(self.private.sign(data))
        if self.alg == "RS256":
            return bytes(self.private.sign(data, padding.PKCS1v15(), hashes.SHA256()))
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        return bytes(self.private.sign(data, pss, hashes.SHA256()))

    def proof(
        self,
        method: str,
        url: str,
        *,
        token: str | None = None,
        nonce: str | None = None,
        iat: float | None = None,
        header: dict[str, Any] | None = None,
        claims: dict[str, Any] | None = None,
        drop: tuple[str, ...] = (),
    ) -> str:
        head: dict[str, Any] = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.jwk}
        head.update(header or {})
        body: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "htm": method,
            "htu": url.split("?", 1)[0].split("#", 1)[0],
            "iat": int(time.time() if iat is None else iat),
        }
        if token is not None:
            body["ath"] = ath(token)
        if nonce is not None:
            body["nonce"] = nonce
        body.update(claims or {})
        for name in drop:
            body.pop(name, None)
        return compact(head, body, self.sign)


def ath(token: str) -> str:
    return b64(hashlib.sha256(token.encode("ascii")).digest())


def compact(header: dict[str, Any], claims: dict[str, Any], sign: Any) -> str:
    signing_input = ".".join(
        b64(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    return f"{signing_input}.{b64(sign(signing_input.encode('ascii')))}"

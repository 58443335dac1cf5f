"""DPoP for bench/run.py's ``me-dpop`` scenario, run in ours' venv (it needs cryptography).

    python bench/dpop_proofs.py login KEYFILE URL USERNAME PASSWORD  # prints the access token
    python bench/dpop_proofs.py proofs KEYFILE URL TOKEN COUNT  # the token, then COUNT proofs

``login`` makes an ES256 key (kept in KEYFILE, PEM) and logs in with a proof, so the session
is bound to it; ``proofs`` writes COUNT proofs of that key for ``GET URL`` with that token,
each with its own jti, one a line, for wrk to send once each (``proofs`` mode of bench.lua).
A proof lives a minute on the server: make them right before the run that sends them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import sys
import time
import urllib.request
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64(numbers.x.to_bytes(32, "big")),
        "y": b64(numbers.y.to_bytes(32, "big")),
    }


def proof(
    key: ec.EllipticCurvePrivateKey, header: str, method: str, url: str, token: str | None
) -> str:
    claims = {"jti": secrets.token_urlsafe(16), "htm": method, "htu": url, "iat": int(time.time())}
    if token:
        claims["ath"] = b64(hashlib.sha256(token.encode()).digest())
    signing_input = f"{header}.{b64(json.dumps(claims, separators=(',', ':')).encode())}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _header(key: ec.EllipticCurvePrivateKey) -> str:
    head = {"typ": "dpop+jwt", "alg": "ES256", "jwk": _jwk(key)}
    return b64(json.dumps(head, separators=(",", ":")).encode())


def login(keyfile: Path, url: str, username: str, password: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    body = json.dumps({"username": username, "password": password}).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "DPoP": proof(key, _header(key), "POST", url, None),
        },
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (loopback)
        pair = json.loads(answer.read())
    if pair.get("token_type") != "DPoP":
        raise SystemExit(f"the login was not bound: {pair.get('token_type')}")
    return str(pair["access"])


def proofs(keyfile: Path, url: str, token: str, count: int) -> list[str]:
    key = serialization.load_pem_private_key(keyfile.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    header = _header(key)
    return [token, *(proof(key, header, "GET", url, token) for _ in range(count))]


def main(argv: list[str]) -> None:
    if len(argv) == 6 and argv[1] == "login":
        print(login(Path(argv[2]), argv[3], argv[4], argv[5]))
    elif len(argv) == 6 and argv[1] == "proofs":
        sys.stdout.write("\n".join(proofs(Path(argv[2]), argv[3], argv[4], int(argv[5]))) + "\n")
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)

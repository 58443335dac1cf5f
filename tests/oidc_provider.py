"""A small OpenID Connect provider, in its own process, for the social-login tests.

``python -m tests.oidc_provider --key KEY.pem [--kid KID] [--port 0]`` serves on
127.0.0.1 and prints its issuer URL (one line) once it listens:

- ``/.well-known/openid-configuration``: the discovery document (issuer, jwks_uri, the
  authorization, token and userinfo endpoints);
- ``/jwks``: the RSA public key of ``KEY.pem`` under ``KID``;
- ``/_requests``: the paths asked so far, oldest first (what the relying party fetched).

It signs nothing: the test holds the same private key and mints the id_tokens a client
would have got, with PyJWT. The redirect flow's endpoints answer as a provider does to a
request it cannot serve (``invalid_request``); the suite uses the token flow.
:class:`OIDCProvider` starts it with a new key and stops it by its pid.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def jwk_of(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    """The public JWK of ``key``, as a provider's JWKS lists it."""
    public: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**public, "kid": kid, "use": "sig", "alg": "RS256"}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.asked.append(self.path)
        issuer = self.server.issuer
        if self.path == "/.well-known/openid-configuration":
            self._json(200, {
                "issuer": issuer,
                "jwks_uri": f"{issuer}/jwks",
                "authorization_endpoint": f"{issuer}/authorize",
                "token_endpoint": f"{issuer}/token",
                "userinfo_endpoint": f"{issuer}/userinfo",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_post"],
                "code_challenge_methods_supported": ["S256"],
            })  # fmt: skip
        elif self.path == "/jwks":
            self._json(200, {"keys": [self.server.jwk]})
        elif self.path == "/_requests":
            self._json(200, self.server.asked[:-1])  # not this one
        elif self.path.startswith("/authorize"):
            self._json(400, {"error": "invalid_request"})
        elif self.path == "/userinfo":
            self._json(401, {"error": "invalid_token"})
        else:
            self._json(404, {"error": "not_found"})

    def do_POST(self) -> None:
        self.server.asked.append(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.path == "/token":
            self._json(400, {"error": "invalid_grant"})
        else:
            self._json(404, {"error": "not_found"})

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the test reads /_requests instead


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, jwk: dict[str, Any]) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.jwk = jwk
        self.asked: list[str] = []
        self.issuer = f"http://127.0.0.1:{self.server_address[1]}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", required=True, type=Path, help="the RSA private key (PEM)")
    parser.add_argument("--kid", default="test-key-1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    key = serialization.load_pem_private_key(args.key.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey), "an RSA key"
    server = _Server(args.port, jwk_of(key, args.kid))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(server.issuer, flush=True)
    server.serve_forever()
    server.server_close()


class OIDCProvider:
    """``with OIDCProvider() as idp:`` the provider at ``idp.issuer``; ``idp.id_token(...)``
    mints a token it would have issued."""

    def __init__(self, kid: str = "test-key-1") -> None:
        self.kid = kid
        self.key = new_key()
        self.folder = Path(tempfile.mkdtemp(prefix="authapi-oidc-"))
        self.key_file = self.folder / "key.pem"
        self.key_file.write_bytes(pem(self.key))
        self.key_file.chmod(0o600)
        self.issuer = ""
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> Self:
        command = [sys.executable, "-m", "tests.oidc_provider",
                   "--key", str(self.key_file), "--kid", self.kid, "--port", "0"]  # fmt: skip
        root = Path(__file__).resolve().parent.parent
        self.process = subprocess.Popen(
            command, cwd=root, stdout=subprocess.PIPE, text=True, env={**os.environ}
        )
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout=30)
        line = self.process.stdout.readline().strip() if ready else ""
        if not line.startswith("http://127.0.0.1:"):
            self.__exit__()
            raise RuntimeError(f"the OIDC provider did not start: {line!r}")
        self.issuer = line
        return self

    def __exit__(self, *exc: object) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if process is not None and process.stdout is not None:
            process.stdout.close()

    def id_token(
        self,
        *,
        key: rsa.RSAPrivateKey | None = None,
        algorithm: str = "RS256",
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """An id_token of this provider: ``claims`` over a fresh iss/iat/exp, signed by its
        key unless ``key`` is another; a claim or header given as None is left out."""
        now = int(time.time())
        body = {"iss": self.issuer, "iat": now, "exp": now + 300, **claims}
        body = {name: value for name, value in body.items() if value is not None}
        signer: Any = key or self.key
        if algorithm == "none":
            signer = None
        header = {"kid": self.kid, **(headers or {})}
        header = {name: value for name, value in header.items() if value is not None}
        return jwt.encode(body, signer, algorithm=algorithm, headers=header)


if __name__ == "__main__":
    main()

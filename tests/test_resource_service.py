"""examples/resource-service, a real service of its own, in both modes: the auth service's
store (JWKS_URL + REDIS_URL) and its introspection alone (INTROSPECTION_URL and its client,
no key material). Its Ninja routes say ``auth=resource_bearer`` and nothing else, its DRF
route ``ResourceAuthentication``: every bad-token kind is a 401 ``{"detail", "code"}`` with
a challenge, an outage a 503 with ``Retry-After``. A bad AUTHAPI_RESOURCE is reported by
``manage.py check`` naming the key, and uvicorn refuses to start on it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from authapi import keys
from tests import dpop_client
from tests.conftest import PASSWORD, ROOT, LiveServer, bearer
from tests.redis_server import RedisServer, free_port
from tests.test_resource_kit import EXAMPLE, ResourceService

CLIENT = ("orders", "orders-secret-value-0123456789")
ROUTES = ("/api/orders", "/api/claims", "/drf/orders")  # Ninja async, Ninja sync, DRF


@pytest.fixture(scope="module")
def es256_pem(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "es256.pem"
    path.write_bytes(keys.generate_private_pem("ES256"))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def store() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def auth(es256_pem, store) -> Iterator[LiveServer]:
    env = {
        "AUTHAPI_ALGORITHM": "ES256",
        "AUTHAPI_SIGNING_KEY": str(es256_pem),
        "AUTHAPI_RESOURCE_CLIENTS": ":".join(CLIENT),
        "AUTHAPI_ISSUER": "https://auth.example.test",
        "AUTHAPI_AUDIENCE": "orders",
        "REDIS_URL": store.url,
    }
    with LiveServer(env=env) as live:
        yield live


def _mode_env(mode: str, auth: LiveServer, store: RedisServer) -> dict[str, str]:
    common = {"RESOURCE_ISSUER": "https://auth.example.test", "RESOURCE_AUDIENCE": "orders"}
    if mode == "store":
        return {
            **common,
            "RESOURCE_JWKS_URL": f"{auth.url}/.well-known/jwks.json",
            "RESOURCE_REDIS_URL": store.url,
        }
    return {  # no JWKS_URL, no SIGNING_KEY: the auth service's answer is the verdict
        **common,
        "RESOURCE_INTROSPECTION_URL": f"{auth.url}/api/auth/introspect",
        "RESOURCE_CLIENT_ID": CLIENT[0],
        "RESOURCE_CLIENT_SECRET": CLIENT[1],
    }


@pytest.fixture(scope="module", params=["store", "introspection"])
def service(request, auth, store) -> Iterator[tuple[str, ResourceService]]:
    with ResourceService(**_mode_env(request.param, auth, store)) as running:
        yield request.param, running


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15) as c:
        yield c


async def _login(http: httpx.AsyncClient, auth: LiveServer, user, **headers: str) -> dict:
    answer = await http.post(
        f"{auth.url}/api/auth/login",
        json={"username": user.username, "password": PASSWORD},
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def _expired(token: str, pem: Path, kid: str) -> str:
    """The same claims, signed by the auth service's own key, an hour past their exp."""
    claims = jwt.decode(token, options={"verify_signature": False})
    claims.update(iat=claims["iat"] - 7200, exp=claims["iat"] - 3600)
    headers = {"kid": kid, "typ": "at+jwt"}
    return jwt.encode(claims, pem.read_bytes(), algorithm="ES256", headers=headers)


def _refused(answer: httpx.Response, what: str, codes: set[str | None], scheme: str) -> None:
    assert answer.status_code == 401, (what, answer.status_code, answer.text)
    body = answer.json()
    assert body.get("detail") and body.get("code") in codes, (what, body)
    assert answer.headers["WWW-Authenticate"].startswith(scheme), (what, answer.headers)


async def test_every_bad_token_kind_is_a_401_with_a_code(http, auth, service, es256_pem, user):
    mode, resource = service
    pair = await _login(http, auth, user)
    gone = await _login(http, auth, user)
    out = await http.post(f"{auth.url}/api/auth/logout", json={"refresh": gone["refresh"]})
    assert out.status_code == 204
    key = dpop_client.Key()
    proof = key.proof("POST", f"{auth.url}/api/auth/login")
    bound = await _login(http, auth, user, DPoP=proof)
    kid = jwt.get_unverified_header(pair["access"])["kid"]
    head, claims, sig = pair["access"].split(".")
    stranger = _stranger_token(pair["access"])
    invalid: set[str | None] = {"token_not_valid"}
    kinds: dict[str, tuple[dict[str, str], set[str | None], str]] = {
        "no credentials": ({}, {"not_authenticated"}, "Bearer"),
        "malformed": (bearer("not-a-jwt"), invalid, "Bearer"),
        "tampered": (bearer(f"{head}.{claims}.{sig[:-4]}AAAA"), invalid, "Bearer"),
        "refresh as access": (bearer(pair["refresh"]), invalid, "Bearer"),
        "expired": (bearer(_expired(pair["access"], es256_pem, kid)), invalid, "Bearer"),
        "revoked": (bearer(gone["access"]), invalid, "Bearer"),
        "another issuer's key": (bearer(stranger), invalid, "Bearer"),
        "bound, as Bearer": (bearer(bound["access"]), {"invalid_dpop_proof"}, "DPoP"),
        "bound, no proof": (
            {"Authorization": f"DPoP {bound['access']}"}, {"invalid_dpop_proof"}, "DPoP"
        ),
    }  # fmt: skip
    for route in ROUTES:
        url = f"{resource.url}{route}"
        for kind, (headers, codes, scheme) in kinds.items():
            if route.startswith("/drf") and kind == "no credentials":
                codes = {None}  # DRF's own NotAuthenticated, by the project's handler
            _refused(await http.get(url, headers=headers), f"{mode} {route} {kind}", codes, scheme)
        good = await http.get(url, headers=bearer(pair["access"]))
        assert good.status_code == 200, (mode, route, good.text)
        assert good.json()["user_id"] == user.pk
        proved = await http.get(
            url,
            headers={
                "Authorization": f"DPoP {bound['access']}",
                "DPoP": key.proof("GET", url, token=bound["access"]),
            },
        )
        assert proved.status_code == 200, (mode, route, proved.text)
    # Nothing the refusals did touched the owner: the pair still refreshes.
    turned = await http.post(f"{auth.url}/api/auth/refresh", json={"refresh": pair["refresh"]})
    assert turned.status_code == 200, turned.text


def _stranger_token(token: str) -> str:
    """A well-formed access token of another auth service (its own key and kid)."""
    claims = jwt.decode(token, options={"verify_signature": False})
    stranger = keys.generate_private_pem("ES256")
    return jwt.encode(claims, stranger, algorithm="ES256", headers={"kid": "x", "typ": "at+jwt"})


async def test_introspection_alone_sees_a_revocation_and_the_claims(http, auth, store, user):
    env = _mode_env("introspection", auth, store)
    with ResourceService(**env, RESOURCE_INTROSPECTION_CACHE_SECONDS="0") as resource:
        pair = await _login(http, auth, user)
        url = f"{resource.url}/api/claims"
        claims = (await http.get(url, headers=bearer(pair["access"]))).json()
        decoded = jwt.decode(pair["access"], options={"verify_signature": False})
        for name in ("sub", "user_id", "sid", "jti", "exp", "iat", "iss", "aud"):
            assert claims[name] == decoded[name], name
        out = await http.post(f"{auth.url}/api/auth/logout", json={"refresh": pair["refresh"]})
        assert out.status_code == 204
        _refused(await http.get(url, headers=bearer(pair["access"])), "after logout",
                 {"token_not_valid"}, "Bearer")  # fmt: skip


async def test_an_outage_is_a_503_with_retry_after(http, auth, store, user):
    pair = await _login(http, auth, user)
    dead = {**_mode_env("introspection", auth, store)}
    dead["RESOURCE_INTROSPECTION_URL"] = f"http://127.0.0.1:{free_port()}/api/auth/introspect"
    with ResourceService(**dead) as resource:
        for route in ROUTES:
            down = await http.get(f"{resource.url}{route}", headers=bearer(pair["access"]))
            assert down.status_code == 503, (route, down.text)
            assert down.json()["code"] == "service_unavailable"
            assert int(down.headers["Retry-After"]) > 0
    wrong = {**_mode_env("introspection", auth, store), "RESOURCE_CLIENT_SECRET": "not-it"}
    with ResourceService(**wrong) as resource:  # the auth service refuses the client
        down = await http.get(f"{resource.url}/api/orders", headers=bearer(pair["access"]))
        assert down.status_code == 503 and int(down.headers["Retry-After"]) > 0


# --- configuration: reported by check, and no start -----------------------------------------

BAD = {
    "names no way": ({}, "names no way to check a token"),
    "introspection without its client": (
        {"INTROSPECTION_URL": "http://127.0.0.1:1/i"}, "needs CLIENT_ID"
    ),
    "introspection without its secret": (
        {"INTROSPECTION_URL": "http://127.0.0.1:1/i", "CLIENT_ID": "orders"}, "needs CLIENT_SECRET"
    ),
    "a client without introspection": (
        {"JWKS_URL": "http://127.0.0.1:1/j", "REDIS_URL": "redis://127.0.0.1:1/0",
         "CLIENT_ID": "orders"}, "CLIENT_ID without INTROSPECTION_URL"
    ),
    "a store without a key": ({"REDIS_URL": "redis://127.0.0.1:1/0"}, "REDIS_URL"),
    "both keys": (
        {"JWKS_URL": "http://127.0.0.1:1/j", "SIGNING_KEY": "k" * 40,
         "REDIS_URL": "redis://127.0.0.1:1/0"}, "both JWKS_URL and SIGNING_KEY"
    ),
    "a misspelt key": (
        {"JWKS_URL": "http://127.0.0.1:1/j", "REDIS_URL": "redis://127.0.0.1:1/0",
         "INTROSPECTON_URL": "http://127.0.0.1:1/i"},
        "'INTROSPECTON_URL' (did you mean INTROSPECTION_URL?)"
    ),
}  # fmt: skip


def _settings_module(folder: Path, cfg: dict[str, str]) -> dict[str, str]:
    """The example's settings with AUTHAPI_RESOURCE replaced (a misspelt key cannot come
    through its environment variables)."""
    (folder / "bad_settings.py").write_text(
        f"from resource_service.settings import *  # noqa\nAUTHAPI_RESOURCE = {cfg!r}\n"
    )
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)]),
        "DJANGO_SETTINGS_MODULE": "bad_settings",
    }


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_configuration_fails_check_and_start_naming_the_key(case, tmp_path):
    cfg, named = BAD[case]
    env = _settings_module(tmp_path, cfg)
    check = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=EXAMPLE, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert check.returncode != 0, check.stdout
    assert "authapi.resource.E001" in check.stderr and named in check.stderr, check.stderr
    assert "Traceback" not in check.stderr, check.stderr  # a report, not a crash
    started = time.monotonic()
    serve = subprocess.run(
        [sys.executable, "-m", "uvicorn", "resource_service.asgi:application",
         "--host", "127.0.0.1", "--port", str(free_port())],
        cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert serve.returncode != 0, serve.stderr
    assert named in serve.stderr and time.monotonic() - started < 60
    for secret in ("k" * 40,):
        assert secret not in check.stderr + serve.stderr


def test_a_good_configuration_passes_check(tmp_path):
    cfg = {"INTROSPECTION_URL": "http://127.0.0.1:1/i", "CLIENT_ID": "orders",
           "CLIENT_SECRET": "s" * 32}  # fmt: skip
    check = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=EXAMPLE, env=_settings_module(tmp_path, cfg),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert "no issues" in check.stdout


async def test_a_cached_answer_never_outlives_a_reported_revocation_or_the_token(
    http, auth, store, user, monkeypatch
):
    """INTROSPECTION_CACHE_SECONDS=30, introspection alone: an answer is reused within 30
    s and the token's life; an inactive answer for any token of a session ends the reuse of
    every answer of that session at once."""
    from django.test import override_settings

    from authapi.errors import TokenInvalid
    from authapi.resource import checker as kit

    cfg = {
        "INTROSPECTION_URL": f"{auth.url}/api/auth/introspect",
        "CLIENT_ID": CLIENT[0],
        "CLIENT_SECRET": CLIENT[1],
        "ISSUER": "https://auth.example.test",
        "AUDIENCE": "orders",
        "INTROSPECTION_CACHE_SECONDS": 30,
    }
    with override_settings(AUTHAPI_RESOURCE=cfg):
        check = kit.checker()
        asked: list[str] = []
        real = check._introspect

        def counted(token: str) -> dict | None:
            asked.append(token)
            return real(token)

        monkeypatch.setattr(check, "_introspect", counted)
        first = await _login(http, auth, user)
        for _ in range(3):
            assert (await check.verify(first["access"])).user_id == user.pk
        assert len(asked) == 1
        cached = check._answers.get(first["access"])
        assert cached is not None and cached.body is not None
        lifetime = cached.body["exp"] - time.time()
        assert cached.until <= time.monotonic() + min(30, lifetime) + 1
        turned = await http.post(f"{auth.url}/api/auth/refresh", json={"refresh": first["refresh"]})
        second = turned.json()
        await check.verify(second["access"])
        assert len(asked) == 2
        out = await http.post(f"{auth.url}/api/auth/logout", json={"refresh": second["refresh"]})
        assert out.status_code == 204
        await check.verify(first["access"])  # within the 30 s: the documented staleness
        assert len(asked) == 2
        with pytest.raises(TokenInvalid):  # a token of that session, asked about afresh
            await check.verify(second["refresh"])
        for token in (first["access"], second["access"]):  # the session's answers are gone
            with pytest.raises(TokenInvalid):
                await check.verify(token)
        assert len(asked) == 5
        for token in (first["access"], second["access"]):  # and stay gone
            with pytest.raises(TokenInvalid):
                await check.verify(token)
        assert len(asked) == 7  # an unverified "inactive" is never kept: asked each time
    kit.reset()

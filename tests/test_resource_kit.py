"""authapi.resource: another service accepts our access tokens and refuses a revoked one at
once. The example project (examples/resource-service) runs as its own uvicorn from its own
folder, with no database and no authapi app, against a live auth server (ES256, JWKS)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from authapi import keys, store, tokens
from authapi.errors import StoreUnavailable, TokenInvalid
from authapi.resource import checker as kit
from authapi.resource import jwks
from tests.conftest import PASSWORD, ROOT, LiveServer, bearer
from tests.redis_server import free_port

EXAMPLE = ROOT / "examples" / "resource-service"


class ResourceService(LiveServer):
    """The example project under uvicorn, started from its own folder, with nothing of the
    test session's environment but what it is given."""

    def __init__(self, **env: str) -> None:
        super().__init__(app="resource_service.asgi:application", cwd=EXAMPLE)
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/tmp"),
            "DJANGO_SETTINGS_MODULE": "resource_service.settings",
            "PYTHONPATH": str(ROOT),  # the code under test (a worktree's, not the install's)
            **env,
        }


@pytest.fixture(scope="module")
def es256_key(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "es256.pem"
    path.write_bytes(keys.generate_private_pem("ES256"))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def auth(es256_key) -> Iterator[LiveServer]:
    env = {"AUTHAPI_ALGORITHM": "ES256", "AUTHAPI_SIGNING_KEY": str(es256_key)}
    with LiveServer(env=env) as live:
        yield live


@pytest.fixture(scope="module")
def resource(auth) -> Iterator[ResourceService]:
    with ResourceService(
        RESOURCE_JWKS_URL=f"{auth.url}/.well-known/jwks.json",
        RESOURCE_REDIS_URL=os.environ["REDIS_URL"],
    ) as service:
        yield service


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15) as c:
        yield c


async def _login(http: httpx.AsyncClient, base: str, user) -> dict:
    answer = await http.post(
        f"{base}/api/auth/login", json={"username": user.username, "password": PASSWORD}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


# --- the walkthrough, process to process ------------------------------------------------


async def test_login_call_logout_call(http, auth, resource, user):
    pair = await _login(http, auth.url, user)
    orders = await http.get(f"{resource.url}/api/orders", headers=bearer(pair["access"]))
    assert orders.status_code == 200, orders.text
    assert orders.json()["user_id"] == user.pk
    claims = await http.get(f"{resource.url}/api/claims", headers=bearer(pair["access"]))
    assert claims.json()["sub"] == str(user.pk)
    out = await http.post(
        f"{auth.url}/api/auth/logout",
        json={"refresh": pair["refresh"]},
        headers=bearer(pair["access"]),
    )
    assert out.status_code == 204
    again = await http.get(f"{resource.url}/api/orders", headers=bearer(pair["access"]))
    assert again.status_code == 401, again.text
    assert again.json()["code"] == "token_not_valid"
    assert 'error="invalid_token"' in again.headers["WWW-Authenticate"]


async def test_revocation_at_the_auth_service_is_seen_at_once_under_load(
    http, auth, resource, make_user
):
    """Revoke while the resource service is being called: from the revoking response on,
    not one call is let through."""
    user = await make_user()
    pair = await _login(http, auth.url, user)
    stop = asyncio.Event()
    revoked_at: list[float] = []
    leaks: list[float] = []

    async def hammer() -> None:
        while not stop.is_set():
            sent = time.monotonic()
            answer = await http.get(f"{resource.url}/api/orders", headers=bearer(pair["access"]))
            if answer.status_code == 200 and revoked_at and sent > revoked_at[0]:
                leaks.append(sent)

    workers = [asyncio.create_task(hammer()) for _ in range(4)]
    await asyncio.sleep(0.3)
    answer = await http.post(f"{auth.url}/api/auth/revoke", data={"token": pair["refresh"]})
    revoked_at.append(time.monotonic())
    assert answer.status_code == 200
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*workers)
    assert leaks == []


@pytest.mark.parametrize("kind", ["refresh", "garbage", "none", "basic"])
async def test_the_resource_service_refuses_what_is_no_access_token(
    http, auth, resource, user, kind
):
    pair = await _login(http, auth.url, user)
    headers = {
        "refresh": bearer(pair["refresh"]),
        "garbage": bearer("a.b.c"),
        "none": {},
        "basic": {"Authorization": "Basic YTpi"},
    }[kind]
    answer = await http.get(f"{resource.url}/api/orders", headers=headers)
    assert answer.status_code == 401, answer.text
    assert answer.json()["code"] in {"token_not_valid", "not_authenticated"}
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_token_of_another_issuer_key_is_refused(http, resource, user):
    """A token signed by the suite's own HMAC key (a different service) is not accepted."""
    from tests.conftest import login

    transport = httpx.ASGITransport(app=__import__("project.asgi").asgi.application)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as local:
        pair = await login(local, user)
    answer = await http.get(f"{resource.url}/api/orders", headers=bearer(pair["access"]))
    assert answer.status_code == 401


async def test_store_down_is_503_never_open(http, auth, user):
    pair = await _login(http, auth.url, user)
    with ResourceService(
        RESOURCE_JWKS_URL=f"{auth.url}/.well-known/jwks.json",
        RESOURCE_REDIS_URL=f"redis://127.0.0.1:{free_port()}",
    ) as blind:
        answer = await http.get(f"{blind.url}/api/orders", headers=bearer(pair["access"]))
        assert answer.status_code == 503, answer.text
        assert answer.json()["code"] == "service_unavailable"
        assert "Retry-After" in answer.headers


async def test_auth_service_down_changes_nothing_for_a_store_backed_checker(
    http, es256_key, make_user
):
    """Keys fetched once are kept; revocation still comes from the store."""
    user = await make_user()
    env = {"AUTHAPI_ALGORITHM": "ES256", "AUTHAPI_SIGNING_KEY": str(es256_key)}
    with LiveServer(env=env) as auth_once:
        pair = await _login(http, auth_once.url, user)
        service = ResourceService(
            RESOURCE_JWKS_URL=f"{auth_once.url}/.well-known/jwks.json",
            RESOURCE_REDIS_URL=os.environ["REDIS_URL"],
        )
        service.__enter__()
        try:
            first = await http.get(f"{service.url}/api/orders", headers=bearer(pair["access"]))
            assert first.status_code == 200
        except BaseException:
            service.__exit__()
            raise
    try:  # the auth service is gone now
        still = await http.get(f"{service.url}/api/orders", headers=bearer(pair["access"]))
        assert still.status_code == 200, still.text
        payload = jwt.decode(pair["access"], options={"verify_signature": False})
        assert await store.revoke_session(user.pk, payload["sid"])
        gone = await http.get(f"{service.url}/api/orders", headers=bearer(pair["access"]))
        assert gone.status_code == 401
    finally:
        service.__exit__()


# --- the checker in-process: keys, introspection, HMAC ------------------------------------


class _JwksServer:
    """A JWKS endpoint that counts its hits and can be told to fail or change its keys."""

    def __init__(self, document: dict[str, Any], cache_control: str = "public, max-age=3600"):
        self.document, self.cache_control, self.status, self.hits = document, cache_control, 200, 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.hits += 1
                body = json.dumps(outer.document).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", outer.cache_control)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"

    def __enter__(self) -> _JwksServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _es256() -> tuple[keys.Key, dict[str, Any]]:
    key = keys._pem_key("ES256", keys.generate_private_pem("ES256").decode(), "test", private=True)
    return key, keys.KeySet(current=key, by_kid={key.kid: key}).jwks()


def _token(key: keys.Key, *, kid: str | None = None, **claims: Any) -> str:
    now = int(time.time())
    payload = {"token_type": "access", "exp": now + 300, "iat": now, "jti": tokens.new_id(),
               "user_id": 7, "sub": "7", "sid": tokens.new_id(), **claims}  # fmt: skip
    return jwt.encode(
        payload, key.signing, algorithm="ES256", headers={"kid": kid or key.kid, "typ": "at+jwt"}
    )


async def test_forged_kids_fetch_the_jwks_at_most_once_per_interval():
    key, document = _es256()
    with _JwksServer(document) as server:
        cache = jwks.KeyCache(server.url, min_refetch=60, default_max_age=300, timeout=2)
        await cache.ready(key.kid)
        assert server.hits == 1 and cache.lookup(key.kid) is not None
        await asyncio.gather(*(cache.ready(f"forged-{i}") for i in range(50)))
        assert server.hits == 1  # fetched a moment ago: no refetch for unknown kids
        cache.last_attempt -= 61  # the interval has passed
        await asyncio.gather(*(cache.ready(f"forged-again-{i}") for i in range(50)))
        assert server.hits == 2  # one refetch for the first unknown kid, none after
        for _ in range(20):
            await cache.ready(key.kid)  # fresh (max-age=3600): no fetch
        assert server.hits == 2


async def test_a_new_kid_is_picked_up_and_the_last_good_set_survives_an_outage():
    old, document = _es256()
    new, new_document = _es256()
    with _JwksServer(document, cache_control="max-age=0") as server:
        cache = jwks.KeyCache(server.url, min_refetch=0, default_max_age=300, timeout=2)
        await cache.ready(old.kid)
        server.document = {"keys": document["keys"] + new_document["keys"]}
        await cache.ready(new.kid)  # rotation: unknown kid, refetched
        assert cache.lookup(new.kid) is not None
        server.status = 503
        cache.min_refetch = 0
        cache.last_attempt = float("-inf")
        await cache.ready(old.kid)  # stale and the service fails: keep the set
        assert cache.lookup(old.kid) is not None and cache.lookup(new.kid) is not None


async def test_no_keys_at_all_is_503():
    cache = jwks.KeyCache(
        f"http://127.0.0.1:{free_port()}/jwks", min_refetch=60, default_max_age=300, timeout=1
    )
    with pytest.raises(StoreUnavailable):
        await cache.ready("any")


def test_cache_control_max_age():
    assert jwks.max_age("public, max-age=120", 300) == 120
    assert jwks.max_age("no-store", 300) == 0
    assert jwks.max_age(None, 300) == 300
    assert jwks.max_age("public", 300) == 300


async def test_the_kit_checks_typ_type_iss_aud_exp_and_nbf():
    key, document = _es256()
    with _JwksServer(document) as server:
        cfg = {"JWKS_URL": server.url, "REDIS_URL": os.environ["REDIS_URL"],
               "ISSUER": "https://auth.example", "AUDIENCE": "orders", "LEEWAY": 5}  # fmt: skip
        good = {"iss": "https://auth.example", "aud": "orders"}
        with override_settings(AUTHAPI_RESOURCE=cfg):
            check = kit.checker()
            assert (await check.claims(_token(key, **good))).user_id == 7
            now = int(time.time())
            refused = [
                _token(key, **good, token_type="refresh"),
                _token(key, iss="https://other", aud="orders"),
                _token(key, iss="https://auth.example", aud="billing"),
                _token(key, aud="orders"),
                _token(key, **good, exp=now - 10),
                _token(key, **good, nbf=now + 60),
                _token(key, **good, sub="8"),
                _token(key, **good, cnf={"x5t#S256": "a" * 43}),  # bound some other way
                jwt.encode(
                    jwt.decode(_token(key, **good), options={"verify_signature": False}),
                    key.signing,
                    algorithm="ES256",
                    headers={"kid": key.kid, "typ": "dpop+jwt"},
                ),  # fmt: skip
            ]
            for token in refused:
                with pytest.raises(TokenInvalid):
                    await check.claims(token)
            # within the leeway
            assert await check.claims(_token(key, **good, exp=now - 2))
            assert await check.claims(_token(key, **good, nbf=now + 2))
            await kit.aclose()


async def test_the_kit_decides_revocation_exactly_as_the_service(client, user, authapi_settings):
    """Same key layout, same verdict: with the service's own HMAC secret (SIGNING_KEY)."""
    secret = "a-shared-secret-for-hmac-deployments-0123456789"
    cfg = {"SIGNING_KEY": secret, "REDIS_URL": os.environ["REDIS_URL"]}
    with authapi_settings(SIGNING_KEY=secret), override_settings(AUTHAPI_RESOURCE=cfg):
        from tests.conftest import login

        pair = await login(client, user)
        context = await kit.verify(pair["access"])
        assert context.user_id == user.pk and context["sub"] == str(user.pk)
        with pytest.raises(TokenInvalid):
            await kit.verify(pair["refresh"])
        # revoke the access token alone (RFC 7009): the kit refuses it, the session lives
        await client.post("/api/auth/revoke", data={"token": pair["access"]})
        with pytest.raises(TokenInvalid):
            await kit.verify(pair["access"])
        nxt = (await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})).json()
        assert (await kit.verify(nxt["access"])).sid == context.sid
        await client.post("/api/auth/logout-all", headers=bearer(nxt["access"]))
        with pytest.raises(TokenInvalid):
            await kit.verify(nxt["access"])
        await kit.aclose()


async def test_introspection_mode(http, user):
    """With INTROSPECTION_URL the auth service decides, per call; a wrong client is a 503."""
    secret = "a-shared-secret-for-hmac-deployments-9876543210"
    env = {"AUTHAPI_RESOURCE_CLIENTS": "orders:orders-secret-value", "AUTHAPI_SIGNING_KEY": secret}
    with LiveServer(env=env) as hs:
        cfg = {"INTROSPECTION_URL": f"{hs.url}/api/auth/introspect", "CLIENT_ID": "orders",
               "CLIENT_SECRET": "orders-secret-value", "SIGNING_KEY": secret}  # fmt: skip
        pair = await _login(http, hs.url, user)
        with override_settings(AUTHAPI_RESOURCE=cfg):
            assert (await kit.verify(pair["access"])).user_id == user.pk
            await http.post(f"{hs.url}/api/auth/logout", json={"refresh": pair["refresh"]})
            with pytest.raises(TokenInvalid):
                await kit.verify(pair["access"])
        pair = await _login(http, hs.url, user)
        with override_settings(AUTHAPI_RESOURCE={**cfg, "CLIENT_SECRET": "wrong"}):
            with pytest.raises(StoreUnavailable):
                await kit.verify(pair["access"])


@pytest.mark.parametrize(
    "cfg",
    [
        {},
        {"JWKS_URL": "http://x/jwks"},  # no revocation source
        {"JWKS_URL": "http://x", "SIGNING_KEY": "y" * 32, "REDIS_URL": "redis://x"},
        {"JWKS_URL": "http://x", "INTROSPECTION_URL": "http://x/i"},  # no client
        {"JWKS_URL": "http://x", "REDIS_URL": "redis://x", "REDIS_ULR": "typo"},
        {"SIGNING_KEY": "y" * 32, "ALGORITHM": "RS256", "REDIS_URL": "redis://x"},
    ],
)
def test_misconfiguration_is_an_error_naming_the_fault(cfg):
    from authapi.resource import settings as resource_settings

    with pytest.raises(ImproperlyConfigured):
        resource_settings.from_mapping(cfg)


async def test_a_dpop_bound_token_needs_its_proof_at_the_resource_service(
    http, auth, resource, user
):
    """Process to process: bound at the auth service, checked with its proof by the kit;
    a copy of the token, a replayed proof or a thief's key get nothing."""
    from tests.dpop_client import Key

    key, thief = Key(), Key()
    login = f"{auth.url}/api/auth/login"
    answer = await http.post(
        login,
        json={"username": user.username, "password": PASSWORD},
        headers={"DPoP": key.proof("POST", login)},
    )
    pair = answer.json()
    assert pair["token_type"] == "DPoP", pair
    access, orders = pair["access"], f"{resource.url}/api/orders"

    def dpop(k, **kw):
        return {
            "Authorization": f"DPoP {access}",
            "DPoP": k.proof("GET", orders, token=access, **kw),
        }

    headers = dpop(key)
    ok = await http.get(orders, headers=headers)
    assert ok.status_code == 200, ok.text
    assert ok.json()["user_id"] == user.pk
    replay = await http.get(orders, headers=headers)
    assert replay.status_code == 401
    assert replay.json()["code"] == "invalid_dpop_proof"
    for refused_headers in (
        bearer(access),
        dpop(thief),
        {"Authorization": f"DPoP {access}"},
        {
            "Authorization": f"DPoP {access}",
            "DPoP": key.proof("GET", f"{auth.url}/api/auth/me", token=access),
        },
    ):
        refused = await http.get(orders, headers=refused_headers)
        assert refused.status_code == 401, refused.text
        assert "DPoP" in refused.headers["WWW-Authenticate"]
    logout = f"{auth.url}/api/auth/logout"
    out = await http.post(
        logout, json={"refresh": pair["refresh"]}, headers={"DPoP": key.proof("POST", logout)}
    )  # a bound refresh token ends its session only with a proof by its key
    assert out.status_code == 204
    gone = await http.get(orders, headers=dpop(key))
    assert gone.status_code == 401
    assert gone.json()["code"] == "token_not_valid"


def test_the_kit_imports_nothing_of_the_service():
    """No store module (its metrics make folders), no models, no app registry needed."""
    code = (
        "import sys, authapi.resource.checker, authapi.resource.ninja;"
        "bad = [m for m in sys.modules if m in ('authapi.store', 'authapi.metrics',"
        " 'authapi.api', 'authapi.users', 'authapi.embedded')];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=EXAMPLE,
                         env={"PATH": os.environ["PATH"],
                              "DJANGO_SETTINGS_MODULE": "resource_service.settings"},
                         timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


async def test_the_readme_read_only_acl_user_is_enough_and_cannot_write(
    client, user, authapi_settings
):
    """README's ACL line: the kit works with it, and that user can change nothing."""
    import re

    import redis as redis_sync

    line = re.search(r"ACL SETUSER resource on (.*)", (ROOT / "README.md").read_text())
    assert line
    rules = line[1].split()
    password = "acl-test-password-123456"
    rules = [f">{password}" if r.startswith(">") else r for r in rules]
    admin = redis_sync.Redis.from_url(os.environ["REDIS_URL"])
    admin.execute_command("ACL", "SETUSER", "resource", "reset", "on", *rules)
    try:
        url = os.environ["REDIS_URL"].replace("redis://", f"redis://resource:{password}@", 1)
        secret = "a-shared-secret-for-the-acl-test-0123456789"
        cfg = {"SIGNING_KEY": secret, "REDIS_URL": url}
        with authapi_settings(SIGNING_KEY=secret), override_settings(AUTHAPI_RESOURCE=cfg):
            from tests.conftest import login

            pair = await login(client, user)
            assert (await kit.verify(pair["access"])).user_id == user.pk
            await client.post("/api/auth/logout", json={"refresh": pair["refresh"]})
            with pytest.raises(TokenInvalid):
                await kit.verify(pair["access"])
            await kit.aclose()
        reader = redis_sync.Redis.from_url(url)
        try:
            with pytest.raises(redis_sync.exceptions.NoPermissionError):
                reader.hset(f"authapi:{{u{user.pk}}}:s:x", "uid", "1")
            with pytest.raises(redis_sync.exceptions.NoPermissionError):
                reader.delete(f"authapi:{{u{user.pk}}}:s:x")
            for key in (f"authapi:{{u{user.pk}}}:s:x", f"authapi:{{u{user.pk}}}:sessions", "x"):
                with pytest.raises(redis_sync.exceptions.NoPermissionError):
                    reader.set(key, "1")
            # A DPoP proof's jti: the one thing it writes, never read back by this user.
            assert reader.set(f"authapi:{{u{user.pk}}}:dp:test", "1", nx=True, px=1000)
            with pytest.raises(redis_sync.exceptions.NoPermissionError):
                reader.get(f"authapi:{{u{user.pk}}}:dp:test")
        finally:
            reader.close()
    finally:
        admin.execute_command("ACL", "DELUSER", "resource")
        admin.close()


@pytest.fixture
def drf_project():
    """As a DRF project runs: rest_framework installed and configured before its views are
    imported (APIView reads DEFAULT_AUTHENTICATION_CLASSES once, at import)."""
    from tests import drf_settings

    with drf_settings.installed():
        yield


async def test_drf_resource_authentication(http, auth, user, drf_project):
    from asgiref.sync import sync_to_async
    from rest_framework.permissions import IsAuthenticated
    from rest_framework.response import Response
    from rest_framework.test import APIRequestFactory
    from rest_framework.views import APIView

    from authapi.resource.drf import ResourceAuthentication

    class Orders(APIView):
        authentication_classes = [ResourceAuthentication]
        permission_classes = [IsAuthenticated]

        def get(self, request):
            return Response({"user_id": request.auth["user_id"], "pk": request.user.pk})

    def call(headers: dict[str, str]) -> Any:
        request = APIRequestFactory().get("/orders", **headers)  # type: ignore[arg-type]
        response = Orders.as_view()(request)
        response.render()
        return response

    cfg = {"JWKS_URL": f"{auth.url}/.well-known/jwks.json", "REDIS_URL": os.environ["REDIS_URL"]}
    with override_settings(AUTHAPI_RESOURCE=cfg):
        pair = await _login(http, auth.url, user)
        ok = await sync_to_async(call)({"HTTP_AUTHORIZATION": f"Bearer {pair['access']}"})
        assert ok.status_code == 200, ok.content
        assert ok.data == {"user_id": user.pk, "pk": user.pk}
        await http.post(f"{auth.url}/api/auth/logout", json={"refresh": pair["refresh"]})
        for headers in (
            {"HTTP_AUTHORIZATION": f"Bearer {pair['access']}"},
            {"HTTP_AUTHORIZATION": f"Bearer {pair['refresh']}"},
            {"HTTP_AUTHORIZATION": "Bearer a.b.c"},
        ):
            refused = await sync_to_async(call)(headers)
            assert refused.status_code == 401, refused.content
            assert json.loads(refused.content)["code"] == "token_not_valid"
            assert refused["WWW-Authenticate"].startswith("Bearer")
        assert (await sync_to_async(call)({})).status_code == 401


async def test_the_compose_configuration_shared_hmac_key(http, make_user):
    """compose.yaml's resource service: RESOURCE_SIGNING_KEY = the API's AUTHAPI_SIGNING_KEY,
    RESOURCE_REDIS_URL = its store; the example as its own process."""
    import yaml

    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    service = compose["services"]["resource"]
    assert service["environment"]["RESOURCE_SIGNING_KEY"] == "${AUTHAPI_SIGNING_KEY:-}"
    assert compose["x-api-env"]["AUTHAPI_SIGNING_KEY"] == "${AUTHAPI_SIGNING_KEY:-}"
    assert service["environment"]["RESOURCE_REDIS_URL"] == compose["x-api-env"]["REDIS_URL"]
    assert "ports" not in service and service["profiles"] == ["resource"]
    assert "./examples/resource-service:/srv/resource:ro" in service["volumes"]
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "location /resource/" in nginx and "set $resource http://resource:8001;" in nginx

    secret = "a-shared-secret-as-compose-sets-it-0123456789"
    user = await make_user()
    with (
        LiveServer(env={"AUTHAPI_SIGNING_KEY": secret}) as api,
        ResourceService(
            RESOURCE_SIGNING_KEY=secret, RESOURCE_REDIS_URL=os.environ["REDIS_URL"]
        ) as resource,
    ):
        assert (await http.get(f"{resource.url}/api/health")).status_code == 200
        pair = await _login(http, api.url, user)
        auth = bearer(pair["access"])
        assert (await http.get(f"{resource.url}/api/orders", headers=auth)).status_code == 200
        out = await http.post(f"{api.url}/api/auth/logout", json={"refresh": pair["refresh"]})
        assert out.status_code == 204
        assert (await http.get(f"{resource.url}/api/orders", headers=auth)).status_code == 401


async def test_verify_in_a_bare_asgi_app(http, auth, make_user):
    """examples/resource-service/plain_asgi.py: verify() with Django only configured."""
    user = await make_user()
    service = ResourceService(
        RESOURCE_JWKS_URL=f"{auth.url}/.well-known/jwks.json",
        RESOURCE_REDIS_URL=os.environ["REDIS_URL"],
    )
    service.env.pop("DJANGO_SETTINGS_MODULE")
    service.app = "plain_asgi:app"
    with service:
        pair = await _login(http, auth.url, user)
        auth_header = bearer(pair["access"])
        ok = await http.get(service.url, headers=auth_header)
        assert ok.status_code == 200 and ok.json() == {"user_id": user.pk, "sub": str(user.pk)}
        assert (await http.get(service.url)).status_code == 401
        await http.post(f"{auth.url}/api/auth/logout", json={"refresh": pair["refresh"]})
        refused = await http.get(service.url, headers=auth_header)
        assert refused.status_code == 401
        assert refused.json()["code"] == "token_not_valid"
        assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]


@pytest.mark.parametrize("handlers", [True, False])
async def test_resource_bearer_never_answers_500(handlers, client, user, authapi_settings):
    """With the kit's error handlers: our JSON; without them: Ninja's 401 / 503, no 500."""
    from ninja import NinjaAPI
    from ninja.testing import TestAsyncClient

    from authapi.resource import install_error_handlers, resource_bearer
    from tests.conftest import login

    api = NinjaAPI(auth=resource_bearer, urls_namespace=f"kit-{handlers}")
    if handlers:
        install_error_handlers(api)

    @api.get("/x")
    async def x(request):
        return {"user_id": request.auth.user_id}

    test = TestAsyncClient(api)
    secret = "a-shared-secret-for-the-handler-test-012345678"
    with authapi_settings(SIGNING_KEY=secret):
        pair = await login(client, user)
    for redis_url, token, status in (
        (os.environ["REDIS_URL"], pair["access"], 200),
        (os.environ["REDIS_URL"], "a.b.c", 401),
        (os.environ["REDIS_URL"], pair["refresh"], 401),
        (f"redis://127.0.0.1:{free_port()}", pair["access"], 503),
    ):
        cfg = {"SIGNING_KEY": secret, "REDIS_URL": redis_url}
        with override_settings(AUTHAPI_RESOURCE=cfg):
            answer = await test.get("/x", headers={"Authorization": f"Bearer {token}"})
            await kit.aclose()
        assert answer.status_code == status, answer.content
        if status != 200:
            body = answer.json()
            assert body["detail"]
            if handlers:
                assert body["code"] in {"token_not_valid", "service_unavailable"}


def _counted(calls: list[int], real: Any) -> Any:
    def counting(*args: Any) -> Any:
        calls.append(1)
        return real(*args)

    return counting


async def test_the_introspection_cache_is_bounded(http, user, monkeypatch):
    """INTROSPECTION_CACHE_SECONDS=N: an active answer is reused for at most N seconds (the
    documented staleness), an inactive one until the token's exp; 0: one call per check."""
    secret = "a-shared-secret-for-the-cache-test-0123456789"
    env = {"AUTHAPI_RESOURCE_CLIENTS": "orders:orders-secret-value", "AUTHAPI_SIGNING_KEY": secret}
    with LiveServer(env=env) as hs:
        cfg = {"INTROSPECTION_URL": f"{hs.url}/api/auth/introspect", "CLIENT_ID": "orders",
               "CLIENT_SECRET": "orders-secret-value", "SIGNING_KEY": secret}  # fmt: skip
        pair = await _login(http, hs.url, user)
        with override_settings(AUTHAPI_RESOURCE={**cfg, "INTROSPECTION_CACHE_SECONDS": 30}):
            check = kit.checker()
            calls: list[int] = []
            real = check._introspect
            monkeypatch.setattr(check, "_introspect", _counted(calls, real))
            for _ in range(3):
                await check.verify(pair["access"])
            assert len(calls) == 1
            cached = check._answers.get(pair["access"])
            assert cached is not None and cached.body is not None and cached.session
            assert cached.until <= time.monotonic() + 30
            await http.post(f"{hs.url}/api/auth/logout", json={"refresh": pair["refresh"]})
            await check.verify(pair["access"])  # within the bound: still the cached answer
            check._answers.revoked(cached.session)  # as if the N seconds were over
            with pytest.raises(TokenInvalid):
                await check.verify(pair["access"])
            for _ in range(3):
                with pytest.raises(TokenInvalid):
                    await check.verify(pair["access"])
            assert len(calls) == 2  # the inactive answer is kept: no call per check
        pair = await _login(http, hs.url, user)
        with override_settings(AUTHAPI_RESOURCE=cfg):  # no cache: every check asks
            check = kit.checker()
            calls.clear()
            real = check._introspect
            monkeypatch.setattr(check, "_introspect", _counted(calls, real))
            for _ in range(3):
                await check.verify(pair["access"])
            assert len(calls) == 3
            await http.post(f"{hs.url}/api/auth/logout", json={"refresh": pair["refresh"]})
            with pytest.raises(TokenInvalid):
                await check.verify(pair["access"])


def test_the_example_passes_django_checks_with_no_database_and_no_authapi_app():
    env = {"PATH": os.environ["PATH"], "RESOURCE_JWKS_URL": "http://127.0.0.1:1/jwks",
           "RESOURCE_REDIS_URL": "redis://127.0.0.1:1/0"}  # fmt: skip
    out = subprocess.run([sys.executable, "manage.py", "check"], capture_output=True, text=True,
                         cwd=EXAMPLE, env=env, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "no issues" in out.stdout
    settings_text = (EXAMPLE / "resource_service" / "settings.py").read_text()
    assert (
        '"authapi"' not in settings_text
        and "DATABASES: dict[str, dict[str, str]] = {}" in settings_text
    )

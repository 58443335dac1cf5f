"""``auth=jwt_bearer`` on a host's own bare ``NinjaAPI()``, no ``install_error_handlers``:
every refusal is our whole 401 (``code``, ``WWW-Authenticate``), never a 500, and the
host's own handlers and other auth classes keep their answers (authapi.host_api)."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.http import JsonResponse
from ninja import NinjaAPI
from ninja import errors as ninja_errors
from ninja.security import APIKeyHeader
from ninja.testing import TestAsyncClient, TestClient

from authapi import host_api
from authapi.auth import jwt_bearer
from tests.conftest import bearer, login

bare = NinjaAPI(urls_namespace="bare-ninja-test")


class HostKey(APIKeyHeader):
    param_name = "X-Host-Key"

    def authenticate(self, request, key):
        return key if key == "host-secret" else None


@bare.get("/sync", auth=jwt_bearer)
def whoami_sync(request):
    return {"user_id": request.auth.user_id}


@bare.get("/async", auth=jwt_bearer)
async def whoami_async(request):
    return {"user_id": request.auth.user_id}


@bare.get("/hosts-own", auth=HostKey())
def hosts_own(request):
    return {"ok": True}


styled = NinjaAPI(urls_namespace="styled-ninja-test")


@styled.exception_handler(ninja_errors.HttpError)
def host_style(request, exc):  # the host's own rendering of every HttpError
    return JsonResponse({"error": str(exc), "style": "host"}, status=exc.status_code)


@styled.get("/whoami", auth=jwt_bearer)
async def styled_whoami(request):
    return {"user_id": request.auth.user_id}


async def _get(api: NinjaAPI, route: str, headers: dict[str, str] | None = None):
    if route.startswith("/async") or api is styled:
        return await TestAsyncClient(api).get(route, headers=headers or {})
    return await sync_to_async(TestClient(api).get)(route, headers=headers or {})


@pytest.mark.parametrize("route", ["/sync", "/async"])
async def test_bad_tokens_are_our_401_on_a_bare_api(client, user, route):
    pair = await login(client, user)
    head, body, sig = pair["access"].split(".")
    tokens = {
        "malformed": "not-a-jwt",
        "tampered": f"{head}.{body}.{sig[:-4]}AAAA",
        "refresh as access": pair["refresh"],
    }
    missing = await _get(bare, route)
    assert missing.status_code == 401
    assert missing.json()["code"] == "not_authenticated"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    for kind, token in tokens.items():
        response = await _get(bare, route, bearer(token))
        assert response.status_code == 401, kind
        assert response.json()["code"] == "token_not_valid", kind
        assert response.json()["detail"], kind
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), kind
    good = await _get(bare, route, bearer(pair["access"]))
    assert good.status_code == 200
    assert good.json()["user_id"] == user.pk


async def test_the_hosts_other_auth_keeps_ninjas_answer(client, user):
    await _get(bare, "/async", bearer("not-a-jwt"))  # the API has adopted our handlers
    refused = await _get(bare, "/hosts-own")
    assert refused.status_code == 401
    assert refused.json() == {"detail": "Unauthorized"}  # Ninja's, not ours
    assert "WWW-Authenticate" not in refused.headers
    assert (await _get(bare, "/hosts-own", {"X-Host-Key": "host-secret"})).status_code == 200


async def test_the_hosts_own_handler_keeps_rendering_our_refusals(client, user):
    refused = await _get(styled, "/whoami", bearer("not-a-jwt"))
    assert refused.status_code == 401
    assert refused.json() == {"error": "Token is malformed", "style": "host"}


def test_the_ninja_internals_host_api_reads():
    """Pinned: an upgrade of Ninja that moves these fails here, not in a host's 500."""
    api = NinjaAPI(urls_namespace="pinned-ninja-test")
    handler = api._lookup_exception_handler(ninja_errors.AuthenticationError())
    assert handler.func is ninja_errors._default_http_error  # type: ignore[union-attr]
    seen = []

    class Spy:
        def __call__(self, request):
            seen.append(host_api.calling_api(__import__("sys")._getframe(1)))

    api.get("/spy", auth=Spy())(lambda request: {})
    TestClient(api).get("/spy")
    assert seen == [api]

"""``auth=jwt_bearer`` on a host's own bare ``NinjaAPI()``, no ``install_error_handlers``:
a bad token is a 401, never a 500 (issue 26, first part)."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from ninja import NinjaAPI
from ninja.testing import TestAsyncClient, TestClient

from authapi.auth import jwt_bearer
from tests.conftest import bearer, login

bare = NinjaAPI(urls_namespace="bare-ninja-test")


@bare.get("/sync", auth=jwt_bearer)
def whoami_sync(request):
    return {"user_id": request.auth.user_id}


@bare.get("/async", auth=jwt_bearer)
async def whoami_async(request):
    return {"user_id": request.auth.user_id}


@pytest.mark.parametrize("route", ["/sync", "/async"])
async def test_bad_tokens_are_401_on_a_bare_api(client, user, route):
    pair = await login(client, user)
    head, body, sig = pair["access"].split(".")
    tokens = {
        "malformed": "not-a-jwt",
        "tampered": f"{head}.{body}.{sig[:-4]}AAAA",
        "refresh as access": pair["refresh"],
    }

    async def get(token: str):
        if route == "/async":
            return await TestAsyncClient(bare).get(route, headers=bearer(token))
        return await sync_to_async(TestClient(bare).get)(route, headers=bearer(token))

    for kind, token in tokens.items():
        response = await get(token)
        assert response.status_code == 401, kind
        assert "detail" in response.json(), kind
    good = await get(pair["access"])
    assert good.status_code == 200
    assert good.json()["user_id"] == user.pk

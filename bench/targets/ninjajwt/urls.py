"""django-ninja-jwt's async token controllers (pair, refresh, verify, blacklist), and the
two protected routes under AsyncJWTAuth (which loads the user by id)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import path
from ninja import NinjaAPI
from ninja_extra import ControllerBase, NinjaExtraAPI, api_controller, permissions
from ninja_jwt.authentication import AsyncJWTAuth
from ninja_jwt.controller import (
    AsyncTokenBlackListController,
    AsyncTokenObtainPairController,
    AsyncTokenVerificationController,
)


@api_controller("/token", permissions=[permissions.AllowAny], tags=["token"], auth=None)
class TokenController(
    ControllerBase,
    AsyncTokenVerificationController,
    AsyncTokenBlackListController,
    AsyncTokenObtainPairController,
):
    """AsyncNinjaJWTDefaultController, plus the blacklist endpoint."""

    auto_import = False


tokens = NinjaExtraAPI(urls_namespace="tokens", docs_url=None, openapi_url=None)
tokens.register_controllers(TokenController)
bench = NinjaAPI(auth=AsyncJWTAuth(), urls_namespace="bench", docs_url=None, openapi_url=None)


@bench.get("/protected")
async def protected(request: HttpRequest) -> dict[str, Any]:
    return {"user_id": request.auth.pk}  # type: ignore[attr-defined]


@bench.get("/me")
async def me(request: HttpRequest) -> dict[str, Any]:
    user = request.auth  # type: ignore[attr-defined]
    return {
        "id": user.pk,
        "username": user.username,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
    }


urlpatterns = [path("api/", tokens.urls), path("bench/", bench.urls)]

"""One protected endpoint per library, each returning the caller's user id."""

from __future__ import annotations

from django.urls import path
from ninja import NinjaAPI
from ninja_extra import NinjaExtraAPI
from ninja_jwt.authentication import AsyncJWTAuth, AsyncJWTTokenUserAuth
from ninja_jwt.controller import AsyncNinjaJWTDefaultController
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.authentication import (
    JWTAuthentication,
    JWTStatelessUserAuthentication,
)
from rest_framework_simplejwt.views import TokenObtainPairView

from authapi.auth import jwt_bearer
from project.urls import urlpatterns

ours = NinjaAPI(urls_namespace="bench-ours", docs_url=None, openapi_url=None)
peer = NinjaAPI(urls_namespace="bench-ninja-jwt", docs_url=None, openapi_url=None)
peer_login = NinjaExtraAPI(urls_namespace="bench-ninja-jwt-login", docs_url=None)
peer_login.register_controllers(AsyncNinjaJWTDefaultController)


@ours.get("/whoami", auth=jwt_bearer)
async def ours_whoami(request):
    return {"user_id": request.auth.user_id}


@peer.get("/whoami", auth=AsyncJWTAuth())
async def ninja_jwt_whoami(request):
    return {"user_id": request.auth.pk}


@peer.get("/whoami-stateless", auth=AsyncJWTTokenUserAuth())
async def ninja_jwt_stateless(request):
    return {"user_id": request.auth.pk}


class SimpleJWTWhoAmI(APIView):
    authentication_classes = [JWTAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request):
        return Response({"user_id": request.user.pk})


class SimpleJWTStateless(SimpleJWTWhoAmI):
    authentication_classes = [JWTStatelessUserAuthentication]


urlpatterns = [
    *urlpatterns,
    path("bench/ours/", ours.urls),
    path("bench/ninja-jwt/", peer.urls),
    path("bench/simplejwt/whoami", SimpleJWTWhoAmI.as_view()),
    path("bench/simplejwt/whoami-stateless", SimpleJWTStateless.as_view()),
    path("bench/ninja-jwt-login/", peer_login.urls),
    path("bench/simplejwt/token/", TokenObtainPairView.as_view()),
]

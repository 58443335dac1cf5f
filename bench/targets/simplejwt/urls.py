"""simplejwt's token views, and the two protected views: claims only, and the user's row."""

from __future__ import annotations

from django.urls import path
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.authentication import (
    JWTAuthentication,
    JWTStatelessUserAuthentication,
)
from rest_framework_simplejwt.views import (
    TokenBlacklistView,
    TokenObtainPairView,
    TokenRefreshView,
)


class Protected(APIView):
    """JWTAuthentication (it loads the user by id) and IsAuthenticated: the documented guard."""

    authentication_classes = [JWTAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        return Response({"user_id": request.user.pk})


class Me(Protected):
    def get(self, request: Request) -> Response:
        user = request.user
        return Response(
            {
                "id": user.pk,
                "username": user.username,
                "email": user.email,
                "first_name": user.first_name,
                "last_name": user.last_name,
            }
        )


class Resource(APIView):
    """A resource server's guard as simplejwt documents it: JWTStatelessUserAuthentication
    (a TokenUser from the claims, no query). It cannot see a logout or a blacklisted token."""

    authentication_classes = [JWTStatelessUserAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        return Response({"user_id": request.user.pk})


urlpatterns = [
    path("api/token/", TokenObtainPairView.as_view()),
    path("api/token/refresh/", TokenRefreshView.as_view()),
    path("api/token/blacklist/", TokenBlacklistView.as_view()),
    path("bench/protected", Protected.as_view()),
    path("bench/me", Me.as_view()),
    path("bench/resource", Resource.as_view()),
]

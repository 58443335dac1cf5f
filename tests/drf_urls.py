"""tests.urls plus DRF views guarded by authapi.drf, and simplejwt's own views.

``/drf/me`` takes its authentication from ``REST_FRAMEWORK`` (tests/drf_settings.py), as a
project that swapped the class in; the others name their class. simplejwt's views, the
reference for tests/test_simplejwt_parity.py, answer under ``/simplejwt/token/``.
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth import get_user_model
from django.urls import URLPattern, URLResolver, path
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from authapi.auth import AccessContext
from authapi.drf import (
    JWTAuthentication,
    JWTStatelessAuthentication,
    logout,
    logout_all,
    tokens_for_user,
)
from tests.drf_settings import SIMPLEJWT
from tests.urls import handler400, handler403, handler404, handler500
from tests.urls import urlpatterns as test_patterns


def _describe(request: Request) -> dict[str, Any]:
    access = cast(AccessContext, request.auth)
    return {
        "user_id": access.user_id,
        "sid": access.sid,
        "user_class": type(request.user).__name__,
        "pk": request.user.pk,
    }


class DefaultMe(APIView):
    """Authentication and permission from the REST_FRAMEWORK setting."""

    def get(self, request: Request) -> Response:
        return Response({**_describe(request), "username": request.user.get_username()})


class Me(APIView):
    authentication_classes = [JWTAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        return Response({**_describe(request), "username": request.user.get_username()})


class StatelessMe(APIView):
    authentication_classes = [JWTStatelessAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        return Response(_describe(request))


def _token_reads(request: Request) -> dict[str, Any]:
    """What views written for simplejwt read from ``request.auth`` (its ``AccessToken``),
    and from ``request.user.token`` under the stateless classes; the same code serves
    simplejwt's classes and ours (tests/test_simplejwt_parity.py compares the answers)."""
    auth: Any = request.auth
    _, _, raw = request.META["HTTP_AUTHORIZATION"].partition(" ")
    try:
        auth["no-such-claim"]
    except KeyError:
        missing = "KeyError"
    reads = {
        "user_id": auth["user_id"],
        "get": auth.get("user_id"),
        "get_missing": auth.get("no-such-claim"),
        "get_default": auth.get("no-such-claim", 7),
        "in": "jti" in auth,
        "not_in": "no-such-claim" in auth,
        "missing": missing,
        "payload": auth.payload,
        "payload_is_dict": type(auth.payload) is dict,
        "token_type": auth.token_type,
        "raw_is_bytes": type(auth.token) is bytes,
        "raw_is_the_token": auth.token == raw.encode(),
        "str_is_the_token": str(auth) == raw,
        "jti": auth["jti"],
        "exp": auth["exp"],
    }
    token = getattr(request.user, "token", None)
    if token is not None:  # the stateless classes' TokenUser
        reads["user.token[user_id]"] = token["user_id"]
        reads["user.token is auth"] = token is auth
    return reads


class TokenReads(APIView):
    """Authentication from the REST_FRAMEWORK setting (authapi.drf.JWTAuthentication)."""

    def get(self, request: Request) -> Response:
        return Response(_token_reads(request))


class StatelessTokenReads(APIView):
    authentication_classes = [JWTStatelessAuthentication]

    def get(self, request: Request) -> Response:
        return Response(_token_reads(request))


class StatelessUsername(APIView):
    """Reads an attribute a TokenUser has not: the database user is loaded then."""

    authentication_classes = [JWTStatelessAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        return Response({**_describe(request), "username": request.user.username})


class IssueTokens(APIView):
    """A sign-up or SSO view's last step: tokens for a user with no password checked
    (simplejwt's ``RefreshToken.for_user(user)``)."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    def post(self, request: Request) -> Response:
        data: Any = request.data
        username = str(data["username"])
        user = get_user_model()._default_manager.get_by_natural_key(username)
        return Response(tokens_for_user(user, request))


class Logout(APIView):
    """A custom logout view of simplejwt days: ``RefreshToken(refresh).blacklist()``."""

    def post(self, request: Request) -> Response:
        data: Any = request.data
        logout(str(data["refresh"]), request)
        return Response(status=204)


class LogoutAll(APIView):
    """Blacklisting each of the user's ``OutstandingToken``, in simplejwt days."""

    def post(self, request: Request) -> Response:
        return Response({"ended": logout_all(request.user, request)})


drf_patterns: list[URLPattern | URLResolver] = [
    path("drf/me", DefaultMe.as_view()),
    path("drf/user", Me.as_view()),
    path("drf/stateless", StatelessMe.as_view()),
    path("drf/stateless/username", StatelessUsername.as_view()),
    path("drf/token", TokenReads.as_view()),
    path("drf/issue", IssueTokens.as_view()),
    path("drf/logout", Logout.as_view()),
    path("drf/logout-all", LogoutAll.as_view()),
    path("drf/stateless/token", StatelessTokenReads.as_view()),
]

if SIMPLEJWT:
    from rest_framework_simplejwt import views as simplejwt
    from rest_framework_simplejwt.authentication import JWTAuthentication as SimpleJWTAuthentication
    from rest_framework_simplejwt.authentication import JWTStatelessUserAuthentication

    class SimpleJWTMe(APIView):
        """simplejwt's own authentication class: the reference for authapi.drf's answers."""

        authentication_classes = [SimpleJWTAuthentication]
        permission_classes = [IsAuthenticated]

        def get(self, request: Request) -> Response:
            return Response({"pk": request.user.pk})

    class SimpleJWTTokenReads(APIView):
        authentication_classes = [SimpleJWTAuthentication]
        permission_classes = [IsAuthenticated]

        def get(self, request: Request) -> Response:
            return Response(_token_reads(request))

    class SimpleJWTStatelessTokenReads(SimpleJWTTokenReads):
        authentication_classes = [JWTStatelessUserAuthentication]

    drf_patterns += [
        path("simplejwt/me", SimpleJWTMe.as_view()),
        path("simplejwt/token", SimpleJWTTokenReads.as_view()),
        path("simplejwt/stateless/token", SimpleJWTStatelessTokenReads.as_view()),
        path("simplejwt/token/", simplejwt.TokenObtainPairView.as_view()),
        path("simplejwt/token/refresh/", simplejwt.TokenRefreshView.as_view()),
        path("simplejwt/token/verify/", simplejwt.TokenVerifyView.as_view()),
        path("simplejwt/token/blacklist/", simplejwt.TokenBlacklistView.as_view()),
    ]

urlpatterns: list[URLPattern | URLResolver] = [*test_patterns, *drf_patterns]
__all__ = ["urlpatterns", "handler400", "handler403", "handler404", "handler500"]

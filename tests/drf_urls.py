"""tests.urls plus DRF views guarded by authapi.drf, and simplejwt's own views.

``/drf/me`` takes its authentication from ``REST_FRAMEWORK`` (tests/drf_settings.py), as a
project that swapped the class in; the others name their class. simplejwt's views, the
reference for tests/test_simplejwt_parity.py, answer under ``/simplejwt/token/``.
"""

from __future__ import annotations

from typing import Any, cast

from django.urls import URLPattern, URLResolver, path
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from authapi.auth import AccessContext
from authapi.drf import JWTAuthentication, JWTStatelessAuthentication
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


class StatelessUsername(APIView):
    """Reads an attribute a TokenUser has not: the database user is loaded then."""

    authentication_classes = [JWTStatelessAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        return Response({**_describe(request), "username": request.user.username})


drf_patterns: list[URLPattern | URLResolver] = [
    path("drf/me", DefaultMe.as_view()),
    path("drf/user", Me.as_view()),
    path("drf/stateless", StatelessMe.as_view()),
    path("drf/stateless/username", StatelessUsername.as_view()),
]

if SIMPLEJWT:
    from rest_framework_simplejwt import views as simplejwt
    from rest_framework_simplejwt.authentication import JWTAuthentication as SimpleJWTAuthentication

    class SimpleJWTMe(APIView):
        """simplejwt's own authentication class: the reference for authapi.drf's answers."""

        authentication_classes = [SimpleJWTAuthentication]
        permission_classes = [IsAuthenticated]

        def get(self, request: Request) -> Response:
            return Response({"pk": request.user.pk})

    drf_patterns += [
        path("simplejwt/me", SimpleJWTMe.as_view()),
        path("simplejwt/token/", simplejwt.TokenObtainPairView.as_view()),
        path("simplejwt/token/refresh/", simplejwt.TokenRefreshView.as_view()),
        path("simplejwt/token/verify/", simplejwt.TokenVerifyView.as_view()),
        path("simplejwt/token/blacklist/", simplejwt.TokenBlacklistView.as_view()),
    ]

urlpatterns: list[URLPattern | URLResolver] = [*test_patterns, *drf_patterns]
__all__ = ["urlpatterns", "handler400", "handler403", "handler404", "handler500"]

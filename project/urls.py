from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path

urlpatterns = [
    path("", include("authapi.urls")),
    path("admin/", admin.site.urls),
]
if settings.ACCOUNTS:  # AUTHAPI_ACCOUNTS=on
    urlpatterns += [
        path("_allauth/", include("allauth.headless.urls")),
        # the providers' OAuth callbacks (social login's redirect flow)
        path("accounts/", include("allauth.urls")),
    ]


def _error(status: int, detail: str, code: str) -> JsonResponse:
    return JsonResponse({"detail": detail, "code": code}, status=status)


def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _error(400, "Bad request.", "bad_request")


def handler403(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _error(403, "Permission denied.", "permission_denied")


def handler404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _error(404, "Not found.", "not_found")


def handler500(request: HttpRequest) -> JsonResponse:
    return _error(500, "Internal server error.", "server_error")

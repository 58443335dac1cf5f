from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse


def ip_guard(get_response: Any) -> Any:
    """The host's own guard: /internal/ only from INTERNAL_IPS."""

    def middleware(request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/internal/"):
            if request.META.get("REMOTE_ADDR") not in settings.INTERNAL_IPS:
                return HttpResponse("refused by the host's guard", status=403)
        return get_response(request)

    return middleware


def profile(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"user": str(request.user), "session": request.session.session_key})


@login_not_required
def open_form(request: HttpRequest) -> HttpResponse:
    """Open to all, but a POST needs its CSRF token, as on any Django view."""
    return JsonResponse({"method": request.method, "user": str(request.user)})


@login_not_required
def internal(request: HttpRequest) -> HttpResponse:
    return HttpResponse("internal")

"""Async-capable middleware: refuse big bodies early, never answer an error in HTML,
serve static files (the docs UI) through WhiteNoise without a thread hop elsewhere."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core.exceptions import DisallowedHost, ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from django.utils.decorators import sync_and_async_middleware
from whitenoise.middleware import WhiteNoiseMiddleware

from authapi.errors import MAX_BODY, AuthApiError, InvalidHost, PayloadTooLarge

logger = logging.getLogger("authapi")

_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: PayloadTooLarge.code,
    415: "unsupported_media_type",
    500: "server_error",
}
_BODY_HEADERS = frozenset({"content-type", "content-length"})


def _too_large(request: HttpRequest) -> bool:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0) > MAX_BODY
    except ValueError:
        return False


def _first_message(body: dict[str, Any]) -> str | None:
    """The first message of an answer shaped as allauth's: ``{"errors": [{"message"}]}``."""
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        message = errors[0].get("message")
        return message if isinstance(message, str) else None
    return None


def _with_code(response: HttpResponseBase) -> HttpResponseBase:
    """A JSON error without "code" or "detail" (a NinjaAPI without our handlers, allauth's
    headless API) gets them: the code by status, the detail from its first message."""
    if not isinstance(response, HttpResponse):
        return response
    try:
        body = json.loads(response.content)
    except ValueError:
        return response
    if isinstance(body, dict) and ("code" not in body or "detail" not in body):
        body.setdefault("code", _CODES.get(response.status_code, "error"))
        body.setdefault("detail", _first_message(body) or response.reason_phrase or "Error")
        response.content = json.dumps(body).encode()
        response["Content-Length"] = str(len(response.content))
        if response.status_code == 401 and "WWW-Authenticate" not in response:
            response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def _as_json(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    status = response.status_code
    if status < 400:
        return response
    if response.get("Content-Type", "").startswith("application/json"):
        return _with_code(response)
    reason = response.reason_phrase or "Error"
    if status >= 500:
        reason = "Internal server error."
    body = {"detail": reason, "code": _CODES.get(status, "error")}
    converted = JsonResponse(body, status=status)
    for name, value in response.items():  # Allow, WWW-Authenticate, security headers...
        if name.lower() not in _BODY_HEADERS:
            converted[name] = value
    converted.cookies = response.cookies
    return converted


Handler = Callable[[HttpRequest], Any]


def _process_exception(request: HttpRequest, exc: Exception) -> HttpResponseBase | None:
    """Our errors raised from any view (not only Ninja's) still answer as themselves."""
    return exc.response() if isinstance(exc, AuthApiError) else None


@sync_and_async_middleware
def json_errors(get_response: Handler) -> Handler:
    """413 for declared bodies over 16 KiB; any non-JSON 4xx/5xx becomes {"detail","code"}."""
    # The early 413 skips the middleware below: it gets their security headers from here.
    below = (SecurityMiddleware(get_response), XFrameOptionsMiddleware(get_response))

    def too_large(request: HttpRequest) -> HttpResponseBase:
        response: HttpResponse = PayloadTooLarge().response()
        for middleware in below:
            response = middleware.process_response(request, response)
        return response

    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponseBase:
            if _too_large(request):
                return too_large(request)
            return _as_json(request, await get_response(request))

        middleware.process_exception = _process_exception  # type: ignore[attr-defined]
        return middleware

    def sync_middleware(request: HttpRequest) -> HttpResponseBase:
        if _too_large(request):
            return too_large(request)
        return _as_json(request, get_response(request))

    sync_middleware.process_exception = _process_exception  # type: ignore[attr-defined]
    return sync_middleware


@sync_and_async_middleware
def static_files(get_response: Handler) -> Handler:
    """WhiteNoise for STATIC_URL only, so API requests pay no sync hop."""
    if not iscoroutinefunction(get_response):
        return WhiteNoiseMiddleware(get_response)  # type: ignore[no-any-return]
    static_url = settings.STATIC_URL or "/static/"
    # WhiteNoise answers None for files it does not have; we fall through to the app then.
    serve = sync_to_async(WhiteNoiseMiddleware(lambda request: None), thread_sensitive=False)

    async def middleware(request: HttpRequest) -> HttpResponseBase:
        if request.path_info.startswith(static_url):
            found = await serve(request)
            if found is not None:
                return await _buffered(found)
        response: HttpResponseBase = await get_response(request)
        return response

    return middleware


async def _buffered(response: HttpResponseBase) -> HttpResponseBase:
    """WhiteNoise streams files with a sync iterator; hand ASGI the bytes instead."""
    if not response.streaming:
        return response

    def read() -> bytes:
        try:
            return b"".join(response)
        finally:
            response.close()

    content = await sync_to_async(read, thread_sensitive=False)()
    plain = HttpResponse(content, status=response.status_code)
    for name, value in response.items():
        plain[name] = value
    plain["Content-Length"] = str(len(content))
    return plain


def api_security(get_response: Handler) -> Handler:
    """Host validation, the HTTPS redirect and the security headers, on the event loop.

    What CommonMiddleware, SecurityMiddleware and XFrameOptionsMiddleware do for an API
    request, under the same settings, without their thread hop per method: their
    request/response methods touch nothing but settings and headers.
    """
    security = SecurityMiddleware(get_response)
    frames = XFrameOptionsMiddleware(get_response)

    def headers(request: HttpRequest, response: Any) -> HttpResponseBase:
        return frames.process_response(request, security.process_response(request, response))

    async def middleware(request: HttpRequest) -> HttpResponseBase:
        try:
            request.get_host()
        except DisallowedHost:
            return headers(request, InvalidHost().response())
        redirect = security.process_request(request)
        if redirect is not None:
            return redirect
        return headers(request, await get_response(request))

    if not iscoroutinefunction(get_response):
        raise ImproperlyConfigured("authapi.middleware.api_security is async only.")
    markcoroutinefunction(middleware)
    return middleware


api_security.async_capable = True  # type: ignore[attr-defined]
api_security.sync_capable = False  # type: ignore[attr-defined]

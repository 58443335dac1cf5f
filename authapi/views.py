"""The service's own views: the JWKS document and the health check (operations of the
NinjaAPI, so they are in the OpenAPI document), /metrics (plain Django: Prometheus
text, not JSON), and the docs UI with its own assets."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import json
from pathlib import Path
from typing import Any

import ninja
from asgiref.sync import sync_to_async
from django.apps import apps
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import NoReverseMatch, reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_safe
from ninja.openapi.docs import Swagger

from authapi import conf, keys, metrics, outages, store
from authapi.auth import bearer_token, scheme_hint
from authapi.errors import NotAuthenticated, NotFound, TokenInvalid


async def jwks(request: HttpRequest) -> JsonResponse:
    """``/.well-known/jwks.json``: the current and every still-accepted public key."""
    cfg = conf.get()
    if cfg.is_hmac:
        response = NotFound("No public keys: tokens are signed with a shared secret (HMAC).")
        return response.response()
    result = JsonResponse(keys.get().jwks())
    result["Cache-Control"] = f"public, max-age={cfg.jwks_max_age}"
    return result


def _database_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        outages.failed("database", outages.database(), exc)
        return False
    outages.answered("database")
    return True


async def health(request: HttpRequest) -> JsonResponse:
    """200 when the database and Redis answer, 503 (with Retry-After) otherwise."""
    database = await sync_to_async(_database_answers)()
    redis = await store.ping()
    ok = database and redis
    body = {
        "status": "ok" if ok else "unavailable",
        "database": "ok" if database else "unavailable",
        "redis": "ok" if redis else "unavailable",
    }
    if not ok:
        body.update(detail="A backing service does not answer.", code="service_unavailable")
    response = JsonResponse(body, status=200 if ok else 503)
    if not ok:
        response["Retry-After"] = "5"
        response._has_been_logged = True  # type: ignore[attr-defined]  # see authapi.outages
    return response


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


@csrf_exempt  # read-only, no cookies: a stray POST should learn 405, not 403
@require_GET
async def prometheus(request: HttpRequest) -> HttpResponse:
    """``/metrics``: Prometheus text for ``Authorization: Bearer <AUTHAPI_METRICS_TOKEN>``;
    a 404 while no token is configured."""
    expected = conf.get().metrics_token
    if expected is None:
        return NotFound().response()
    sent = bearer_token(request)
    if not sent:
        return NotAuthenticated(scheme_hint(request)).response()
    # Digests first: equal lengths, so the comparison time tells nothing about the token.
    if not hmac.compare_digest(_digest(sent), _digest(expected)):
        return TokenInvalid("The metrics token is not valid.").response()
    response = HttpResponse(
        await asyncio.to_thread(metrics.render), content_type=metrics.CONTENT_TYPE
    )
    response["Cache-Control"] = "no-store"
    return response


async def trailing_slash(request: HttpRequest, **kwargs: object) -> JsonResponse:
    """``/api/auth/login/``: a 404 that names the path without the slash."""
    without = request.path.rstrip("/")
    return NotFound(f"No such path. Did you mean {without} (no trailing slash)?").response()


# --- the docs UI: Ninja's Swagger page, with its assets served from here -------------------
#
# Ninja's page takes its script and CSS from STATIC_URL, which nothing serves under plain
# uvicorn (runserver does, and so does the project's WhiteNoise): a host project's
# /api/docs was a blank page. These few files are served by the app itself, beside the page.

_NINJA_STATIC = Path(ninja.__file__).parent / "static" / "ninja"
DOCS_ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-init.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
    "favicon.png": "image/png",
}
_assets: dict[str, bytes] = {}

_PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    <link type="text/css" rel="stylesheet" href="{base}/swagger-ui.css">
    <link rel="icon" href="{base}/favicon.svg" type="image/svg+xml">
    <link rel="icon" href="{base}/favicon.png" type="image/png">
    <title>{title}</title>
</head>
<body data-csrf-token="" data-api-csrf="">
    <script type="application/json" id="swagger-settings">{settings}</script>
    <div id="swagger-ui"></div>
    <script src="{base}/swagger-ui-bundle.js"></script>
    <script src="{base}/swagger-ui-init.js"></script>
</body>
</html>
"""


class SwaggerUI(Swagger):
    """Ninja's Swagger UI whose assets come from ``<docs page>/assets/`` (authapi.urls)."""

    def render_page(self, request: HttpRequest, api: Any, **kwargs: Any) -> HttpResponse:
        settings = {**self.settings, "url": self.get_openapi_url(api, kwargs)}
        beside = _allauth_spec()
        if beside:  # allauth's headless API beside ours, picked in the top bar
            settings["urls"] = [
                {"url": settings["url"], "name": str(api.title)},
                {"url": beside, "name": "allauth headless (accounts)"},
            ]
            settings["layout"] = "StandaloneLayout"
        # In a <script> element: "</" would end it early.
        text = json.dumps(settings, indent=1).replace("</", "<\\/")
        page = _PAGE.format(
            base=html.escape(request.path.rstrip("/") + "/assets", quote=True),
            title=html.escape(str(api.title)),
            settings=text,
        )
        return HttpResponse(page, content_type="text/html; charset=utf-8")


def _allauth_spec() -> str | None:
    """Where allauth serves its OpenAPI document (HEADLESS_SERVE_SPECIFICATION), if it does."""
    if not apps.is_installed("allauth.headless"):
        return None
    try:
        return reverse("headless:openapi_json")
    except NoReverseMatch:
        return None


@require_safe
async def docs_asset(request: HttpRequest, name: str) -> HttpResponse:
    """One file of the docs UI (a fixed list: no path ever reaches the file system)."""
    content_type = DOCS_ASSETS.get(name)
    if content_type is None:
        return NotFound().response()
    content = _assets.get(name)
    if content is None:
        content = _assets.setdefault(
            name, await asyncio.to_thread((_NINJA_STATIC / name).read_bytes)
        )
    response = HttpResponse(content, content_type=content_type)
    response["Cache-Control"] = "public, max-age=3600"
    return response

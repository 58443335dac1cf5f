"""The service's own views: the JWKS document and the health check (operations of the
NinjaAPI, so they are in the OpenAPI document), and /metrics (plain Django: Prometheus
text, not JSON)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

from asgiref.sync import sync_to_async
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

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

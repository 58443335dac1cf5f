"""``verify(token)`` outside Django's request cycle: a bare ASGI app (the same few lines
make a FastAPI or Starlette dependency). Django is only configured, never served.

    RESOURCE_JWKS_URL=... RESOURCE_REDIS_URL=... uvicorn plain_asgi:app --port 8002

FastAPI::

    async def current_user(authorization: str = Header()) -> ResourceContext:
        try:
            return await verify(authorization.removeprefix("Bearer "))
        except TokenInvalid as exc:
            raise HTTPException(401, exc.message, {"WWW-Authenticate": "Bearer"}) from None
        except StoreUnavailable as exc:
            raise HTTPException(503, exc.message, {"Retry-After": "5"}) from None
"""

from __future__ import annotations

import json
import os
from typing import Any

from django.conf import settings

settings.configure(
    AUTHAPI_RESOURCE={
        name: os.environ[f"RESOURCE_{name}"]
        for name in (
            "JWKS_URL",
            "SIGNING_KEY",
            "ISSUER",
            "AUDIENCE",
            "REDIS_URL",
            "INTROSPECTION_URL",
            "CLIENT_ID",
            "CLIENT_SECRET",
        )  # fmt: skip
        if os.environ.get(f"RESOURCE_{name}")
    }
)

from authapi.errors import AuthApiError  # noqa: E402
from authapi.resource import verify  # noqa: E402


async def _send_json(send: Any, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
    raw = json.dumps(body).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    head += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": raw})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    sent = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
    scheme, _, token = sent.partition(" ")
    if scheme.lower() != "bearer" or not token:
        body = {"detail": "Send Authorization: Bearer <access token>.", "code": "not_authenticated"}
        await _send_json(send, 401, body, {"WWW-Authenticate": 'Bearer realm="api"'})
        return
    try:
        context = await verify(token.strip())
    except AuthApiError as exc:  # TokenInvalid 401, StoreUnavailable 503
        error = exc.response()
        headers = {k: v for k, v in error.items() if k.lower() != "content-type"}
        await _send_json(send, exc.status, json.loads(error.content), headers)
        return
    await _send_json(send, 200, {"user_id": context.user_id, "sub": context.claims["sub"]}, {})

"""The project's URLs plus small APIs guarded by JWTBearer on sync and async views.

``demo`` installs our error handlers as the README tells users to; ``bare`` does not, and
relies on the middleware to still answer our errors as JSON.
"""

from __future__ import annotations

import asyncio
import io

from django.http import HttpResponse, StreamingHttpResponse
from django.urls import URLPattern, URLResolver, path
from ninja import NinjaAPI

from authapi import install_error_handlers, jwt_bearer
from project.urls import handler400, handler403, handler404, handler500
from project.urls import urlpatterns as project_urls

demo = install_error_handlers(NinjaAPI(urls_namespace="demo", docs_url=None, auth=jwt_bearer))
bare = NinjaAPI(urls_namespace="bare", docs_url=None, openapi_url=None, auth=jwt_bearer)


@demo.get("/async")
async def async_view(request):
    return {"user_id": request.auth.user_id, "sid": request.auth.sid}


@demo.get("/sync")
def sync_view(request):
    return {"user_id": request.auth.user_id, "sid": request.auth.sid}


@demo.get("/sync-slow")
def sync_slow_view(request):
    """Holds its thread for a while: a slow query, a stalled database."""
    import time

    time.sleep(0.5)
    return {"user_id": request.auth.user_id}


@demo.get("/user")
async def user_view(request):
    user = await request.auth.auser()
    return {"username": user.get_username()}


STREAM_CLOSED: list[bool] = []


@demo.get("/stream")
async def stream_view(request):
    """An endless server-sent stream: it may only end because the client went away."""

    async def events():
        try:
            while True:
                yield b"data: tick\n\n"
                await asyncio.sleep(0.01)
        finally:
            STREAM_CLOSED.append(True)

    return StreamingHttpResponse(events(), content_type="text/event-stream")


@bare.get("/async")
async def bare_view(request):
    return {"user_id": request.auth.user_id}


CLOSERS: list[io.BytesIO] = []


async def file_like_view(request):
    """A plain Django view whose answer came from a file-like object (a resource closer)."""
    source = io.BytesIO(b"from a file")
    CLOSERS.append(source)
    return HttpResponse(source)


STOCK_CONNECTIONS: list[object] = []


def stock_query_view(request):
    """A host's plain sync view on Django's own path, querying the database."""
    from django.contrib.auth import get_user_model
    from django.db import connections

    count = get_user_model().objects.count()
    STOCK_CONNECTIONS.append(connections["default"])  # this thread's own, not the proxy
    return HttpResponse(str(count))


SWALLOWED: list[bool] = []


async def swallowing_view(request):
    """Hears the client leave (CancelledError), and answers anyway."""
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        SWALLOWED.append(True)
    return HttpResponse(b"late")


urlpatterns: list[URLPattern | URLResolver] = [
    *project_urls,
    path("demo/", demo.urls),
    path("bare/", bare.urls),
    path("file-like", file_like_view),
    path("swallowing", swallowing_view),
    path("stock-query", stock_query_view),
]
__all__ = ["urlpatterns", "handler400", "handler403", "handler404", "handler500"]

"""Views that tests/test_handler_parity.py runs under Django's ASGIHandler and under the
lean handler side by side (a Ninja API, so serve() can be handed it)."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Iterator

from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import path, reverse
from ninja import NinjaAPI

parity = NinjaAPI(urls_namespace="parity", docs_url=None, openapi_url=None)
closed: list[str] = []  # what the streams' generators saw at their end


@parity.get("/cookies")
def cookies(request: HttpRequest) -> HttpResponseBase:
    response = HttpResponse("cookies")
    response.set_cookie("plain", "value", max_age=60, httponly=True, samesite="Strict")
    response.set_cookie("spaced", 'a value; with "quotes", commas\\ and é', secure=True)
    response.set_cookie("partitioned", "p", path="/parity/", samesite="None", secure=True)
    response.delete_cookie("gone")
    return response


def _parts() -> Iterator[bytes]:
    try:
        for i in range(3):
            yield f"part {i}\n".encode() * 30000  # bigger than one ASGI chunk
    finally:
        closed.append("sync")


async def _async_parts() -> AsyncIterator[bytes]:
    try:
        for i in range(3):
            yield f"apart {i}\n".encode()
    finally:
        closed.append("async")


async def _endless() -> AsyncIterator[bytes]:
    try:
        while True:
            yield b"tick\n"
            await asyncio.sleep(0.01)
    finally:
        closed.append("endless")


@parity.get("/stream")
def stream(request: HttpRequest) -> HttpResponseBase:
    return StreamingHttpResponse(_parts(), content_type="text/plain")


@parity.get("/astream")
def astream(request: HttpRequest) -> HttpResponseBase:
    return StreamingHttpResponse(_async_parts(), content_type="text/plain")


@parity.get("/endless")
def endless(request: HttpRequest) -> HttpResponseBase:
    return StreamingHttpResponse(_endless(), content_type="text/plain")


@parity.get("/file")
def file(request: HttpRequest) -> HttpResponseBase:
    handle = tempfile.TemporaryFile()
    handle.write(b"0123456789" * 20000)
    handle.seek(0)
    return FileResponse(handle, as_attachment=True, filename="data é.bin")


@parity.get("/where")
def where(request: HttpRequest) -> HttpResponseBase:
    return JsonResponse(
        {
            "path": request.path,
            "path_info": request.path_info,
            "script_name": request.META["SCRIPT_NAME"],
            "reversed": reverse("parity:where"),
            "absolute": request.build_absolute_uri("/x"),
        }
    )


urlpatterns = [path("parity/", parity.urls)]

"""The API's ASGI handler: Django's request, URL resolution and middleware chain, without
what ``ASGIHandler`` adds to every request and an API does not need.

``django.core.handlers.asgi.ASGIHandler`` spools each body into a
``SpooledTemporaryFile``, runs the view as a second task beside a task that waits for the
client to go away, and closes the response with ``sync_to_async(response.close)``: a
thread hop per request, even for a view that never leaves the event loop (a third of a
claims-only route's samples were that hop). This handler is built from Django's public
pieces instead (``BaseHandler`` with ``load_middleware(is_async=True)``, ``ASGIRequest``,
``get_response_async``, the request signals), not a subclass:

- the body (bounded: ``authapi.schemas.MAX_BODY``) is read into memory once;
- the view runs in the request's own task, beside one watcher that cancels it when the
  client goes away (Django's rule: the view hears ``CancelledError``), while it works and
  while a streaming answer is sent;
- the request signals are sent with ``asend``, with this class as their sender, and only
  when someone listens: async receivers run on the loop, sync ones in one hop to the
  request's thread, as Django would. Django's own receivers are connected for every
  sender; :func:`authapi.serving.serve` takes them over, so with it nobody listens by
  default and a request pays nothing for the signals.

Used by :func:`authapi.serving.serve` for every path but the admin's and static files.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import aclosing
from typing import Any

from asgiref.sync import sync_to_async
from django.core import signals
from django.core.handlers.asgi import ASGIRequest, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.http import FileResponse, HttpResponseBase
from django.test.utils import override_settings
from django.urls import set_script_prefix

from authapi import limits

logger = logging.getLogger("django.request")
CHUNK = 2**16  # FileResponse block size, as ASGIHandler.chunk_size

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _headers(response: HttpResponseBase) -> list[tuple[bytes, bytes]]:
    """As ASGIHandler.send_response: header case kept, cookies as Set-Cookie lines."""
    headers = [(name.encode("ascii"), value.encode("latin1")) for name, value in response.items()]
    for cookie in response.cookies.values():
        headers.append((b"Set-Cookie", cookie.output(header="").encode("ascii").strip()))
    return headers


async def _stream(response: HttpResponseBase, send: Send) -> None:
    parts: Any = aiter(response)  # type: ignore[arg-type]
    async with aclosing(parts) as content:
        async for part in content:
            await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body"})


async def _send(response: HttpResponseBase, send: Send) -> None:
    start = {"type": "http.response.start", "status": response.status_code}
    start["headers"] = _headers(response)
    await send(start)
    if response.streaming:
        await _stream(response, send)
    else:
        await send({"type": "http.response.body", "body": response.content})  # type: ignore[attr-defined]


class _Watcher:
    """Cancels the request's task when the client goes away (``http.disconnect``)."""

    __slots__ = ("gone", "_task")

    def __init__(self, receive: Receive) -> None:
        self.gone = False
        self._task = asyncio.ensure_future(self._watch(receive, asyncio.current_task()))

    async def _watch(self, receive: Receive, request_task: asyncio.Task[Any] | None) -> None:
        if (await receive())["type"] == "http.disconnect" and request_task is not None:
            self.gone = True
            request_task.cancel()

    def stop(self) -> None:
        self._task.cancel()


async def _finish(response: HttpResponseBase | None) -> None:
    """Close the answer and announce the end, as Django does, without a thread hop when
    nobody listens: closing runs its resource closers (request.close among them)."""
    if response is None:  # no answer (the client left while the view worked)
        if signals.request_finished.has_listeners(APIHandler):
            await signals.request_finished.asend(sender=APIHandler)
        return
    response._handler_class = APIHandler  # type: ignore[attr-defined]  # close()'s sender
    if response.streaming or signals.request_finished.has_listeners(APIHandler):
        # a stream's closers may block, and so may a project's sync receivers: the thread
        await sync_to_async(response.close)()
    else:
        response.close()  # closers only: request_finished has no receiver to run


class APIHandler:
    """An ASGI app serving Django's URLconf through ``middleware`` (a MIDDLEWARE list)."""

    def __init__(self, middleware: list[str]) -> None:
        self.base = BaseHandler()
        # load_middleware reads settings.MIDDLEWARE: the API's list stands in meanwhile.
        with override_settings(MIDDLEWARE=middleware):
            self.base.load_middleware(is_async=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"APIHandler serves http, not {scope['type']}")
        try:
            body = await limits.read_body(receive)
        except limits.BodyTooLarge:
            await limits.answer(send, limits.TOO_LARGE)
            return
        if body is None:
            return  # the client went away before its body arrived
        set_script_prefix(get_script_prefix(scope))
        if signals.request_started.has_listeners(APIHandler):
            await signals.request_started.asend(sender=APIHandler, scope=scope)
        try:
            request = ASGIRequest(scope, io.BytesIO(body))
        except UnicodeDecodeError:  # the query string (RequestLimits refuses it first)
            logger.warning("Bad Request (UnicodeDecodeError)", extra={"status_code": 400})
            await limits.answer(send, limits.BAD_QUERY)
            await _finish(None)
            return
        watcher = _Watcher(receive)
        response: HttpResponseBase | None = None
        heard = False  # whether the watcher's cancellation reached us as CancelledError
        try:
            response = await self.base.get_response_async(request)
            if isinstance(response, FileResponse):
                response.block_size = CHUNK  # as Django: the server does the chunking
            if not response.streaming:
                watcher.stop()  # a buffered answer goes out whole, or to nobody
            await _send(response, send)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not watcher.gone or current is None or current.uncancel() > 0:
                raise  # (also) cancelled from outside, the server stopping: not ours
            heard = True
        finally:
            watcher.stop()
            if watcher.gone and not heard:  # a view that swallowed it: balance the count
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    current.uncancel()
            await _finish(response)

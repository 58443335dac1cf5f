"""The lean path's ASGI handler: Django's own ``ASGIHandler``, with a ``handle`` that adds
nothing an API's request does not need.

A subclass, so what Django does it does the same way on every Django line: the request
(``create_request``), the view (``run_get_response``), the answer on the wire
(``send_response``: headers, cookies in the encoding of the running Django, streaming,
``FileResponse`` chunking), the script prefix. Its ``handle`` differs in three ways:

- the body (bounded by :data:`authapi.asgi.limits.MAX_BODY`) is read into memory once,
  not spooled into a temporary file;
- no thread hop for what need not leave the loop: the request signals go to their
  receivers with this class as sender, sync receivers in one hop, but Django's own
  connection and cache tidying receivers (connected for every sender and left so) are
  not called here, because the lean path tidies the threads it lends itself
  (:mod:`authapi.asgi.threads`); the response's resource closers run on the loop;
- the view runs in the request's own task, beside one watcher that cancels it when the
  client goes away (Django's rule: the view hears ``CancelledError``).

Used by :func:`authapi.asgi.serving.serve` for the service's own paths only.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import UserSettingsHolder, settings
from django.core import signals
from django.core.cache import close_caches
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler, reset_urlconf
from django.db import close_old_connections, reset_queries
from django.dispatch import Signal
from django.http import HttpResponseBase
from django.urls import set_script_prefix

from authapi.asgi import limits
from authapi.asgi.types import Receive, Scope

logger = logging.getLogger("django.request")

# Django's own request-signal receivers: on this path their work is the lent threads'.
DJANGO_TIDYING = frozenset({close_old_connections, reset_queries, close_caches, reset_urlconf})


@contextmanager
def _middleware(middleware: list[str]) -> Iterator[None]:
    """``settings.MIDDLEWARE`` reads as ``middleware`` while the handler loads its chain
    (once, at construction; what ``load_middleware`` reads is that setting)."""
    wrapped = settings._wrapped  # type: ignore[misc]
    holder = UserSettingsHolder(wrapped)
    holder.MIDDLEWARE = middleware
    settings._wrapped = holder
    try:
        yield
    finally:
        settings._wrapped = wrapped


async def send_signal(signal: Signal, **named: Any) -> None:
    """``signal.asend(sender=APIHandler, **named)`` without Django's tidying receivers."""
    if not signal.has_listeners(APIHandler):
        return
    sync_receivers, async_receivers = signal._live_receivers(APIHandler)
    sync_receivers = [r for r in sync_receivers if r not in DJANGO_TIDYING]
    if sync_receivers:

        def run() -> None:
            for receiver in sync_receivers:
                receiver(signal=signal, sender=APIHandler, **named)

        await sync_to_async(run)()
    if async_receivers:
        await asyncio.gather(
            *(r(signal=signal, sender=APIHandler, **named) for r in async_receivers)
        )


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
    """What ``response.close()`` does (its resource closers, request.close among them,
    then ``request_finished``), with the signal as :func:`send_signal` sends it. A
    stream's closers may block: they run on a thread."""
    if response is not None:
        closers = list(response._resource_closers)  # type: ignore[attr-defined]
        response._resource_closers.clear()  # type: ignore[attr-defined]
        answer = response

        def close() -> None:
            for closer in closers:
                try:
                    closer()
                except Exception:
                    pass  # as HttpResponseBase.close
            answer.closed = True

        if response.streaming:
            await sync_to_async(close)()
        else:
            close()
    await send_signal(signals.request_finished)


class APIHandler(ASGIHandler):
    """An ASGI app serving Django's URLconf through ``middleware`` (a MIDDLEWARE list)."""

    def __init__(self, middleware: list[str]) -> None:
        BaseHandler.__init__(self)
        with _middleware(middleware):
            self.load_middleware(is_async=True)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        # serve() routes only http here, inside a ThreadSensitiveContext of its own
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Any, send: Any) -> None:
        try:
            body = await limits.read_body(receive)
        except limits.BodyTooLarge:
            await limits.answer(send, limits.TOO_LARGE)
            return
        if body is None:
            return  # the client went away before its body arrived
        set_script_prefix(get_script_prefix(scope))
        await send_signal(signals.request_started, scope=scope)
        request, error = self.create_request(scope, io.BytesIO(body))
        if request is None:  # a query string that is not UTF-8: Django's 400, in JSON
            await limits.answer(send, limits.BAD_QUERY)
            await _finish(error)
            return
        watcher = _Watcher(receive)
        response: HttpResponseBase | None = None
        heard = False  # whether the watcher's cancellation reached us as CancelledError
        try:
            response = await self.run_get_response(request)
            if not response.streaming:
                watcher.stop()  # a buffered answer goes out whole, or to nobody
            await self.send_response(response, send)
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

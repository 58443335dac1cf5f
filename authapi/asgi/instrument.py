"""Each HTTP request's duration, by route, method and status (``authapi.metrics``)."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver

from authapi import metrics
from authapi.asgi.types import ASGIApp, Message, Receive, Scope, Send

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@functools.lru_cache(maxsize=1024)  # resolving costs ~60 µs; bounded, whatever clients send
def _route(path: str) -> str:
    from django.conf import settings
    from django.urls import resolve

    static = settings.STATIC_URL or "/static/"
    if path.startswith(static if static.startswith("/") else "/" + static):
        return "static"
    try:
        return "/" + str(resolve(path).route)
    except Exception:  # Resolver404, or a path Django cannot even parse
        return "unmatched"


def route_of(scope: Scope) -> str:
    """The URL pattern that serves ``scope`` ("/api/auth/sessions/<sid>"), never its path."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):
        path = path[len(root) :]
    return _route(path) if len(path) <= 256 else _route.__wrapped__(path)  # bounded memory


@receiver(setting_changed)
def _new_urls(*, setting: str, **kwargs: Any) -> None:
    if setting in {"ROOT_URLCONF", "STATIC_URL"}:
        _route.cache_clear()


def instrument(app: Callable[..., Awaitable[None]]) -> ASGIApp:
    """Wrap an ASGI app: each http request's duration by route, method and status."""

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        status = 0  # no answer: the client went away first

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        start = time.perf_counter()
        seen = metrics.get()
        seen.in_progress.inc()
        try:
            await app(scope, receive, watched)
        except BaseException:
            status = status or 500
            raise
        finally:
            seen.in_progress.dec()
            method = str(scope.get("method", ""))
            seen.request_seconds.labels(
                route_of(scope), method if method in _METHODS else "other", str(status)
            ).observe(time.perf_counter() - start)

    return application

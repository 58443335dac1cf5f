"""Opt-in fast serving for ASGI: no OS thread started per request, and API paths through
only the middleware an API needs. ``project/asgi.py`` uses it; the app works without it.

Django's ASGI handler enters a new ``ThreadSensitiveContext`` per request: the first sync
call inside (a request signal's receiver, any ORM call) starts an OS thread, and leaving
the context joins it, while the event loop waits in ``Thread.start`` (58% of ``/me``'s
loop samples). :func:`serve` enters a context first, with a single-thread executor lent
from a pool for the request (asgiref's ``ThreadSensitiveContext(executor=...)``); Django's
own context then nests into it. One request's sync code still runs on one thread, the
threads outlive requests, and so do their database connections (``CONN_MAX_AGE``):
Django's per-request ``close_old_connections`` runs on the thread after the request that
used it, instead of as a thread hop at the start and end of every request. Requests that
reach Django by another way (its own handler, the test client) get Django's receivers'
work done as before.

Every path but the admin's and static files (:data:`STOCK_PREFIXES`) goes to a second
Django handler built with :data:`API_MIDDLEWARE`: JSON errors, CORS, host validation and
security headers, all on the event loop; the API, the JWKS, ``/health`` and the project's
own Ninja routes. The admin and static files keep ``settings.MIDDLEWARE``.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import os
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.cache import close_caches
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import reset_urlconf
from django.db import close_old_connections, connections, reset_queries
from django.urls import set_urlconf

from authapi.handler import APIHandler

T = TypeVar("T")
Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

# Paths that keep Django's full stack (sessions, CSRF, messages): the admin and static files.
STOCK_PREFIXES = ("/admin/", "/static/")
API_MIDDLEWARE = [
    "authapi.middleware.json_errors",
    "corsheaders.middleware.CorsMiddleware",
    "authapi.middleware.api_security",
]


class _Thread(Executor):
    """One long-lived thread; remembers whether the current request used it."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="authapi-sync")
        self.used = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        self.used = True
        return self._pool.submit(fn, *args, **kwargs)

    def tidy(self) -> None:
        """After a request that ran sync code: what Django's request signals would do."""
        if self.used:
            self.used = False
            self._pool.submit(_tidy_connections)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


def _tidy_connections() -> None:
    reset_queries()
    close_old_connections()
    close_caches()


# True inside a request that serve() handles: its lent thread is tidied on release.
_serving: contextvars.ContextVar[bool] = contextvars.ContextVar("authapi_serving", default=False)


async def _request_started(**kwargs: Any) -> None:
    """Django's request_started receivers, for its own handler's requests: on the loop
    within serve() (their work happens on release), else as Django does them."""
    if not _serving.get():
        await sync_to_async(_tidy_connections)()


def _close_connections() -> None:
    close_caches()
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()


async def _request_finished(**kwargs: Any) -> None:
    """Django's request_finished receivers, for its own handler's requests.

    Outside serve() Django's plain ASGI handler runs each request's sync work on a thread
    of its own, which ends with the request, so a connection kept for CONN_MAX_AGE there
    would only leak: close it (and the caches, as Django does).
    """
    set_urlconf(None)
    if not _serving.get():
        await sync_to_async(_close_connections)()


def _take_over_request_signals() -> None:
    """Django's request-signal receivers (sync, for every sender) out; in their place,
    async ones for Django's own ASGIHandler only: the API handler's requests then have no
    listener (unless the project adds one) and their tidying is SyncThreads.release's."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_started.disconnect(reset_queries)
    signals.request_finished.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_caches)
    signals.request_finished.disconnect(reset_urlconf)
    signals.request_started.connect(
        _request_started, sender=ASGIHandler, dispatch_uid="authapi.request_started"
    )
    signals.request_finished.connect(
        _request_finished, sender=ASGIHandler, dispatch_uid="authapi.request_finished"
    )


class SyncThreads:
    """Lends each request a thread of its own; at most ``size``, the rest wait their turn."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._idle: list[_Thread] = []
        self._made = 0
        self._waiting: collections.deque[asyncio.Future[_Thread]] = collections.deque()
        _pools.append(self)

    async def acquire(self) -> _Thread:
        if self._idle:
            return self._idle.pop()
        if self._made < self.size:
            self._made += 1
            return _Thread()
        waiter: asyncio.Future[_Thread] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        return await waiter

    def release(self, thread: _Thread) -> None:
        thread.tidy()
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(thread)
                return
        self._idle.append(thread)


_pools: list[SyncThreads] = []


def close_connections() -> None:
    """Close the database connections that idle lent threads keep (tests, maintenance)."""
    waits = [t._pool.submit(connections.close_all) for pool in _pools for t in pool._idle]
    for done in waits:
        done.result(timeout=10)


def api_handler() -> APIHandler:
    """The API's ASGI handler: Django's URLconf through :data:`API_MIDDLEWARE`."""
    return APIHandler(API_MIDDLEWARE)


def serve(
    django_app: Any,
    *,
    api: Any = None,
    threads: int | None = None,
    stock: tuple[str, ...] = STOCK_PREFIXES,
) -> ASGIApp:
    """Wrap Django's ASGI application: API paths to the lean handler, a lent thread each;
    paths under ``stock`` to ``django_app`` itself."""
    lean = api or api_handler()
    pool = SyncThreads(threads or min(32, (os.cpu_count() or 1) + 4))
    # Their work now happens on the lent thread after each request (SyncThreads.release).
    _take_over_request_signals()

    async def application(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await django_app(scope, receive, send)
            return
        target: Any = django_app if scope["path"].startswith(stock) else lean
        thread = await pool.acquire()
        token = _serving.set(True)
        try:
            async with ThreadSensitiveContext(executor=thread):
                await target(scope, receive, send)
        finally:
            _serving.reset(token)
            pool.release(thread)

    return application

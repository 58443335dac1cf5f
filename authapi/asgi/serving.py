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

Every path but the admin's and static files (:data:`STOCK_PREFIXES`) goes to
:class:`authapi.handler.APIHandler` with :data:`API_MIDDLEWARE`: JSON errors, CORS, host
validation and security headers, all on the event loop; the API, the JWKS, ``/health``
and the project's own Ninja routes. A request there that stays on the loop (a
claims-only route, ``/me``) touches no thread at all: its lent thread is only tidied if
it ran something. The admin and static files keep Django's handler and
``settings.MIDDLEWARE``.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler, StaticFilesHandler
from django.core import signals
from django.core.cache import close_caches
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import reset_urlconf
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections, connections, reset_queries
from django.urls import set_urlconf

from authapi import sync_threads
from authapi.handler import APIHandler
from authapi.sync_threads import SyncThreads

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

# Paths that keep Django's full stack (sessions, CSRF, messages): the admin and static files.
STOCK_PREFIXES = ("/admin/", "/static/")
API_MIDDLEWARE = [
    "authapi.middleware.json_errors",
    "corsheaders.middleware.CorsMiddleware",
    "authapi.middleware.api_security",
]


# True inside a request that serve() handles: its lent thread is tidied on release.
_serving: contextvars.ContextVar[bool] = contextvars.ContextVar("authapi_serving", default=False)


async def _request_started(**kwargs: Any) -> None:
    """Django's request_started receivers, for its own handler's requests: on the loop
    within serve() (their work happens on release), else as Django does them."""
    if not _serving.get():
        await sync_to_async(sync_threads.tidy)()


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


# Django's own servers' handlers: they still get what Django's receivers did. (The test
# clients manage connections themselves: they take Django's receivers off around each
# request and put them back after.)
DJANGO_HANDLERS = (ASGIHandler, ASGIStaticFilesHandler, WSGIHandler, StaticFilesHandler)


def _take_over_request_signals() -> None:
    """Django's request-signal receivers (sync, for every sender) out; in their place,
    async ones for Django's own handlers only (:data:`DJANGO_HANDLERS`). The API
    handler's requests then have no listener unless the project adds one, and their
    tidying is done on the lent threads (:mod:`authapi.sync_threads`)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_started.disconnect(reset_queries)
    signals.request_finished.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_caches)
    signals.request_finished.disconnect(reset_urlconf)
    for handler in DJANGO_HANDLERS:
        signals.request_started.connect(
            _request_started, sender=handler, dispatch_uid="authapi.request_started"
        )
        signals.request_finished.connect(
            _request_finished, sender=handler, dispatch_uid="authapi.request_finished"
        )


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
    """Wrap Django's ASGI application: API paths to the lean handler, paths under
    ``stock`` (after the script prefix) to ``django_app`` itself; a lent thread each."""
    lean = api or api_handler()
    pool = SyncThreads(threads or min(32, (os.cpu_count() or 1) + 4))
    # Their work now happens on the lent thread, queued around its requests (sync_threads).
    _take_over_request_signals()

    async def application(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await django_app(scope, receive, send)
            return
        path: str = scope["path"]
        prefix = get_script_prefix(scope)  # uvicorn puts --root-path into "path" too
        if prefix and path.startswith(prefix):
            path = path[len(prefix.rstrip("/")) :]
        target: Any = django_app if path.startswith(stock) else lean
        lent = pool.lend()
        token = _serving.set(True)
        try:
            async with ThreadSensitiveContext(executor=lent):
                await target(scope, receive, send)
        finally:
            _serving.reset(token)
            lent.release()

    return application

"""Opt-in fast serving for the service's own paths; every other path is Django's.

``application = serve(get_asgi_application())`` changes nothing for a host's own views:
a path the app does not own goes to Django's handler as given, with
``settings.MIDDLEWARE`` (sessions, CSRF, ``request.user``, whatever the host adds), and
Django's request-signal receivers stay connected for every sender, untouched.

The app owns what its URLconf entries resolve to: the Ninja API of ``authapi.urls``
(namespace ``authapi``: ``/api/auth/...``, ``/api/token/...``, the docs, ``/health``,
``/.well-known/...``), the ``/metrics`` view, and the Ninja APIs a project hands over
(``serve(app, apis=[my_api])``). Ownership is decided by Django's own resolver on the
path Django's own request would see (script prefix and ``--root-path`` included), once
per path (bounded cache).

An owned path goes through :class:`authapi.asgi.limits.RequestLimits` (413 before
reading, 408, 431) to :class:`authapi.asgi.handler.APIHandler` with
:data:`API_MIDDLEWARE` (JSON errors, CORS, host validation and security headers, all on
the event loop), in a ``ThreadSensitiveContext`` whose sync calls borrow a long-lived
thread one call at a time (:mod:`authapi.asgi.threads`): no OS thread started per
request, and no thread held while the request waits for the client, the hashing pool or
the store.

A WebSocket is refused (closed before accepting: 403), never a traceback; the documented
launch lines pass ``--ws none`` as nothing here speaks it.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Iterable
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.handlers.asgi import ASGIHandler, ASGIRequest
from django.core.signals import request_finished, setting_changed
from django.db import connections
from django.dispatch import receiver
from django.urls import get_resolver

from authapi.asgi.handler import APIHandler
from authapi.asgi.limits import RequestLimits
from authapi.asgi.threads import SyncThreads
from authapi.asgi.types import ASGIApp, Receive, Scope, Send

API_MIDDLEWARE = [
    "authapi.middleware.json_errors",
    "corsheaders.middleware.CorsMiddleware",
    "authapi.middleware.api_security",
]
NAMESPACE = "authapi"  # authapi.api.api's urls_namespace
VIEWS = "authapi.views"  # the module of the app's plain views (/metrics)


def api_handler() -> APIHandler:
    """The lean handler: Django's URLconf through :data:`API_MIDDLEWARE`."""
    return APIHandler(API_MIDDLEWARE)


@functools.lru_cache(maxsize=4096)  # bounded, whatever paths clients send
def _resolves_to(root_path: str, path: str) -> tuple[str, ...] | None:
    """The namespaces (plus a marker for the app's plain views) that ``path`` resolves to,
    or None where it resolves to nothing. The path is cut as Django's request cuts it."""
    scope = {"type": "http", "method": "GET", "path": path, "root_path": root_path}
    try:
        path_info = ASGIRequest(scope, io.BytesIO()).path_info
        match = get_resolver().resolve(path_info)
    except Exception:  # Resolver404, or a path Django cannot even parse
        return None
    owners = tuple(match.namespaces)
    if getattr(match.func, "__module__", None) == VIEWS:
        owners += (VIEWS,)
    return owners


@receiver(setting_changed)
def _new_urls(*, setting: str, **kwargs: Any) -> None:
    if setting in {"ROOT_URLCONF", "FORCE_SCRIPT_NAME"}:
        _resolves_to.cache_clear()


CACHED_PATH = 256  # characters: longer paths (rare, and maybe hostile) are not kept


def owner(scope: Scope, namespaces: frozenset[str]) -> bool:
    """Whether the http ``scope`` is for one of the app's own paths."""
    root_path, path = str(scope.get("root_path", "")), str(scope["path"])
    if len(path) + len(root_path) <= CACHED_PATH:
        owners = _resolves_to(root_path, path)
    else:
        owners = _resolves_to.__wrapped__(root_path, path)
    return owners is not None and any(name in namespaces for name in owners)


async def refuse_websocket(receive: Receive, send: Send) -> None:
    """Close a WebSocket before accepting it (the server answers the upgrade 403)."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": 1008})


def _close_thread_connections(**kwargs: Any) -> None:
    """Django's ASGI handler runs a request's sync work on a thread of its own, which ends
    with the request: a connection kept there for ``CONN_MAX_AGE`` can never be used again,
    only left open for the garbage collector (psycopg warns of it). Under :func:`serve`,
    where ``CONN_MAX_AGE`` pays on the app's long-lived threads, close it as the request
    finishes, on its own thread (Django sends ``request_finished`` there), as Django's
    persistent connections would be with ``CONN_MAX_AGE = 0``. Django's own receivers run
    as ever; for any other handler (WSGI, a host's subclass) this receiver is not called."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()


def _close_connections_of_djangos_asgi_threads() -> None:
    for handler in (ASGIHandler, ASGIStaticFilesHandler):
        request_finished.connect(
            _close_thread_connections,
            sender=handler,
            dispatch_uid=f"authapi.asgi.serving.close_thread_connections.{handler.__name__}",
        )


def serve(
    django_app: Any,
    *,
    apis: Iterable[Any] = (),
    threads: int | None = None,
    handler: Any = None,
) -> ASGIApp:
    """Wrap Django's ASGI application: the app's own paths (and those of the Ninja APIs
    in ``apis``) to the lean handler, every other path to ``django_app`` untouched."""
    lean = RequestLimits(handler or api_handler())
    pool = SyncThreads(threads or min(32, (os.cpu_count() or 1) + 4))
    namespaces = frozenset({NAMESPACE, VIEWS, *(api.urls_namespace for api in apis)})
    _close_connections_of_djangos_asgi_threads()

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" and owner(scope, namespaces):
            lent = pool.lend()
            try:
                async with ThreadSensitiveContext(executor=lent):
                    await lean(scope, receive, send)
            finally:
                lent.release()
        elif kind == "websocket":
            await refuse_websocket(receive, send)
        else:
            await django_app(scope, receive, send)

    application.pool = pool  # type: ignore[attr-defined]  # tests, maintenance
    return application

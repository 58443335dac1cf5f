"""Django's security, session, auth, messages, CSRF, common and clickjacking middleware,
without the thread hops.

Under ASGI, Django runs every ``MiddlewareMixin`` middleware by calling its
``process_request`` and ``process_response`` through ``sync_to_async``: a thread hop
each, a dozen per request with the default stack, and most of an API request's time
(bench/access_check.py: 3.2 ms -> 1.4 ms p50 without them). Nothing these methods do
needs a thread unless it touches the database, so these subclasses run them inline and
keep the hop only where they may: saving a modified session, a CSRF check of a view that
is not exempt. Use them in place of Django's: the admin's checks accept subclasses, and
``authapi.checks`` runs Django's security deploy checks over them (Django's own look for
its class names only; silence ``security.W001``, ``W002`` and ``W003``, as
``project/settings.py`` does).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest, HttpResponseBase
from django.middleware import clickjacking, common, csrf, security


class _Inline:
    """``__acall__`` that runs ``process_request``/``process_response`` on the loop."""

    get_response: Any

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response  # type: ignore[no-any-return]


class SecurityMiddleware(_Inline, security.SecurityMiddleware):
    """HTTPS redirect and security headers: settings and strings only."""


class CommonMiddleware(_Inline, common.CommonMiddleware):
    """URL resolution for APPEND_SLASH/PREPEND_WWW: CPU only."""


class XFrameOptionsMiddleware(_Inline, clickjacking.XFrameOptionsMiddleware):
    """One response header."""


class AuthenticationMiddleware(_Inline, auth.AuthenticationMiddleware):
    """``request.user`` stays lazy: the query runs only where a view asks, in its thread."""


class MessageMiddleware(_Inline, messages.MessageMiddleware):
    """Messages live in the cookie or in ``request.session``; neither is I/O here."""


class SessionMiddleware(sessions.SessionMiddleware):
    """Opening a session is lazy; only saving a modified one goes to a thread."""

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        self.process_request(request)
        response = await self.get_response(request)  # type: ignore[misc]
        session = getattr(request, "session", None)
        if session is not None and (session.modified or settings.SESSION_SAVE_EVERY_REQUEST):
            return await sync_to_async(self.process_response)(request, response)
        return self.process_response(request, response)


class CsrfViewMiddleware(csrf.CsrfViewMiddleware):
    """Exempt views (every Ninja operation) pass on the loop; others are checked in a thread."""

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        if settings.CSRF_USE_SESSIONS:  # the secret lives in the session: database
            return await super().__acall__(request)
        self.process_request(request)
        response = await self.get_response(request)  # type: ignore[misc]
        return self.process_response(request, response)

    async def process_view(  # type: ignore[override]
        self, request: HttpRequest, callback: Any, callback_args: Any, callback_kwargs: Any
    ) -> HttpResponseBase | None:
        if getattr(callback, "csrf_exempt", False):
            return None
        check = sync_to_async(super().process_view)
        return await check(request, callback, callback_args, callback_kwargs)

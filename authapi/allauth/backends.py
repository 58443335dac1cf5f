"""``ThrottledAuthenticationBackend``: allauth's backend (login by email) behind the login
throttle, so allauth's password logins and ours share one allowance per (client network,
username), per network and per account. List it after
``authapi.backends.ThrottledModelBackend``, which throttles Django's own doors.

A throttled attempt answers 429 and a store outage 503 at allauth's login, as at ours:
refused as a failed ``authenticate()``, either would tell the client that a right password
was wrong (and count one more failure in allauth's own limits)."""

from __future__ import annotations

from typing import Any

from allauth.account.auth_backends import AuthenticationBackend
from allauth.core.exceptions import ImmediateHttpResponse
from django.http import HttpRequest
from django.views.decorators.debug import sensitive_variables

from authapi.backends import throttled
from authapi.errors import StoreUnavailable, Throttled


class ThrottledAuthenticationBackend(AuthenticationBackend):
    @sensitive_variables("credentials")
    def authenticate(self, request: HttpRequest | None, **credentials: Any) -> Any:
        # allauth's login passes email=. A username= comes from Django's own doors (the
        # admin), whose ThrottledModelBackend, listed first, reserved the attempt already.
        name = credentials.get("email")
        if request is None or not isinstance(name, str) or not credentials.get("password"):
            return super().authenticate(request, **credentials)
        check = super().authenticate
        try:
            return throttled(request, name, lambda: check(request, **credentials), answered=True)
        except (Throttled, StoreUnavailable) as exc:  # AccountMiddleware answers it
            raise ImmediateHttpResponse(exc.response()) from exc

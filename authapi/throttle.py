"""Login throttling: every attempt is reserved before its password is checked.

Two allowances, counted together by one script before any hashing: failed logins per
(client IP, username), ``AUTHAPI_LOGIN_RATE`` (5/min), and per client IP across
usernames, ``AUTHAPI_LOGIN_RATE_PER_IP`` (60/min: credential stuffing from one address).
An attempt that would pass either is refused with 429 and is not counted; a successful
login gives its attempt back. So N concurrent wrong passwords get at most the allowance
of 401s, whatever their timing. Every door that checks a password reserves here: the
API's login and its simplejwt alias, and Django's ``authenticate()`` (the admin) through
:class:`authapi.backends.ThrottledModelBackend`.
"""

from __future__ import annotations

from django.http import HttpRequest

from authapi import conf, events, store
from authapi.client import client_ip
from authapi.errors import Throttled


async def reserve(request: HttpRequest, username: str) -> store.Attempt | None:
    """Count one login attempt, or raise Throttled (with Retry-After) if none is left."""
    cfg = conf.get()
    if cfg.login_rate is None and cfg.login_rate_per_ip is None:
        return None
    attempt = store.attempt_keys(client_ip(request), username)
    wait = await store.reserve_attempt(attempt, cfg.login_rate, cfg.login_rate_per_ip)
    if wait:
        await events.emit("login_throttled", request, retry_after=wait)
        raise Throttled(wait)
    return attempt


async def succeeded(attempt: store.Attempt | None) -> None:
    """The password was right: forget this username's failures, give the attempt back."""
    if attempt is not None:
        await store.refund_attempt(attempt)

"""``ThrottledModelBackend``: Django's ModelBackend behind the login throttle.

Put it in ``AUTHENTICATION_BACKENDS`` and every door that calls Django's
``authenticate()`` (the admin's login form, DRF's basic auth, a door added later) shares
the API's allowances of attempts per (client network, username), per client network and
per account (:mod:`authapi.throttle`): a locked account is locked at every door.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.views.decorators.debug import sensitive_variables

from authapi import throttle
from authapi.errors import StoreUnavailable, Throttled


def _username(username: str | None, kwargs: dict[str, Any]) -> str | None:
    if username is None:
        username = kwargs.get(get_user_model().USERNAME_FIELD)
    return username if isinstance(username, str) else None


def throttled(
    request: HttpRequest, name: str, check: Callable[[], Any], *, answered: bool = False
) -> Any:
    """Run a backend's password ``check`` on one reserved attempt (the sync client: this
    runs in a thread); refused (PermissionDenied) when throttled or the store is down, or
    with ``answered`` by Throttled or StoreUnavailable itself, for a door that answers
    them (429, 503)."""
    try:
        attempt = throttle.reserve_sync(request, name)
    except (Throttled, StoreUnavailable):
        if answered:
            raise
        raise PermissionDenied from None
    user = check()
    if user is not None:
        throttle.succeeded_sync(attempt)
    return user


class ThrottledModelBackend(ModelBackend):
    """Reserve the attempt first; refused (PermissionDenied) when throttled or the store
    is down, which makes ``authenticate()`` stop and fail: throttling fails closed."""

    @sensitive_variables("password")
    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        name = _username(username, kwargs)
        if request is None or name is None or password is None:
            return super().authenticate(request, username, password, **kwargs)
        return throttled(
            request,
            name,
            lambda: super(ThrottledModelBackend, self).authenticate(
                request, username, password, **kwargs
            ),
        )

    @sensitive_variables("password")
    async def aauthenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        name = _username(username, kwargs)
        check = sync_to_async(super().authenticate)
        if request is None or name is None or password is None:
            return await check(request, username, password, **kwargs)
        try:
            attempt = await throttle.reserve(request, name)
        except (Throttled, StoreUnavailable):
            raise PermissionDenied from None
        user = await check(request, username, password, **kwargs)
        if user is not None:
            await throttle.succeeded(attempt)
        return user

"""``StoreCache``: Django's cache on the token store, shared by every worker and instance.

django-allauth keeps in the default cache what must hold across processes: the mark of a
TOTP code already used (its replay protection) and its rate limits. Django's default,
LocMemCache, is one per process: with ``--workers`` a code replayed at another worker was
taken again, a second session from one code. ``CACHES = {"default": {"BACKEND":
"authapi.cache.StoreCache"}}`` puts it on the store, whichever URL form (the embedded
server included, started on first use).

Keys live under ``authapi:cache:``; ``clear()`` deletes only those, never ``FLUSHDB``: the
sessions share the database. ``RedisError`` stops here: it becomes StoreUnavailable (503).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis.exceptions import RedisError

from authapi import syncstore
from authapi.errors import StoreUnavailable

PREFIX = "authapi:cache"
F = TypeVar("F", bound=Callable[..., Any])


class _Client(RedisCacheClient):
    """Django's client on the store's URL, resolved on first use, not at start-up."""

    def __init__(self, servers: Any, **options: Any) -> None:
        super().__init__(servers, **options)
        self._lock = threading.Lock()
        self._redis: Any = None

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        with self._lock:
            if self._redis is None:
                self._redis = syncstore.connect()  # bytes: Django's cache pickles
            return self._redis

    def clear(self) -> bool:
        client = self.get_client(write=True)
        for key in client.scan_iter(match=f"{PREFIX}:*", count=500):
            client.delete(key)
        return True


def _answers_outage(method: F) -> F:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable() from exc

    return wrapper  # type: ignore[return-value]


class StoreCache(RedisCache):
    """``CACHES["default"]["BACKEND"] = "authapi.cache.StoreCache"`` (no LOCATION)."""

    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        own = params.get("KEY_PREFIX")
        super().__init__(server or [], {**params, "KEY_PREFIX": f"{PREFIX}:{own or ''}"})
        self._class = _Client


for _name in (
    "add",
    "get",
    "set",
    "touch",
    "delete",
    "get_many",
    "has_key",
    "incr",
    "set_many",
    "delete_many",
    "clear",
):
    setattr(StoreCache, _name, _answers_outage(getattr(RedisCache, _name)))

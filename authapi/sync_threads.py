"""Long-lived threads for requests' sync work, lent on first use.

Each request served by :func:`authapi.serving.serve` gets a :class:`Lent` executor for its
``ThreadSensitiveContext``: nothing until its first sync call (an ORM query, a sync
receiver), then one thread from the pool for the rest of the request, so Django's rule
holds that one request's thread-sensitive code runs on one thread. A request that stays
on the event loop never touches a thread. When every kept thread is out, a new one is
made instead of waiting: a worker whose threads are all held (long streams, a stalled
database) still answers ``/health`` and every loop-only route. The pool keeps ``size``
threads; one made past that ends after its request.

Database connections live on the threads (``CONN_MAX_AGE``) and are tidied there, as
Django's request signals would: after a request that used the thread (``reset_queries``,
``close_old_connections``, ``close_caches``), and before lending a thread that has been
idle for a second or more, so a connection past its age is not reused. The tidying is
queued on the thread itself: the request's own call runs after it, with no wait on the
loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, TypeVar

from django.core.cache import close_caches
from django.db import close_old_connections, connections, reset_queries

T = TypeVar("T")
IDLE_TIDY = 1.0  # seconds idle after which a thread is tidied before it is lent again


def tidy() -> None:
    """What Django's request signals do for a thread's connections, on that thread."""
    reset_queries()
    close_old_connections()
    close_caches()


def _close_all() -> None:
    close_caches()
    connections.close_all()


class _Thread:
    """One long-lived thread (a one-worker ThreadPoolExecutor)."""

    __slots__ = ("_pool", "idle_since")

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="authapi-sync")
        self.idle_since = time.monotonic()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return self._pool.submit(fn, *args, **kwargs)

    def retire(self) -> None:
        """Close its connections, then end the thread (without waiting for it here)."""
        self._pool.submit(_close_all)
        self._pool.shutdown(wait=False)


class SyncThreads:
    """The threads requests borrow; at most ``size`` are kept between requests."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._idle: list[_Thread] = []
        _pools.append(self)

    def take(self) -> _Thread:
        if not self._idle:
            return _Thread()
        thread = self._idle.pop()
        if time.monotonic() - thread.idle_since >= IDLE_TIDY:
            thread.submit(tidy)  # queued before the request's own call
        return thread

    def give(self, thread: _Thread) -> None:
        thread.submit(tidy)
        if len(self._idle) >= self.size:
            thread.retire()
            return
        thread.idle_since = time.monotonic()
        self._idle.append(thread)

    def lend(self) -> Lent:
        return Lent(self)


class Lent(Executor):
    """One request's executor: takes a thread of the pool at its first call, keeps it."""

    __slots__ = ("_pool", "thread")

    def __init__(self, pool: SyncThreads) -> None:
        self._pool = pool
        self.thread: _Thread | None = None

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        if self.thread is None:
            self.thread = self._pool.take()
        return self.thread.submit(fn, *args, **kwargs)

    def release(self) -> None:
        """The request is over: its thread (if it took one) goes back, to be tidied."""
        if self.thread is not None:
            self._pool.give(self.thread)
            self.thread = None

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.release()


_pools: list[SyncThreads] = []


def close_connections() -> None:
    """Close the database connections that idle threads keep (tests, maintenance)."""
    waits = [t.submit(_close_all) for pool in _pools for t in pool._idle]
    for done in waits:
        done.result(timeout=10)

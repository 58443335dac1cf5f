"""Long-lived threads for requests' sync work, lent on first use.

Each request served by :func:`authapi.serving.serve` gets a :class:`Lent` executor for its
``ThreadSensitiveContext``: nothing until its first sync call (an ORM query, a sync
receiver), then one thread from the pool for the rest of the request, so Django's rule
holds that one request's thread-sensitive code runs on one thread. A request that stays
on the event loop never touches a thread, and never waits for one: a worker whose
threads are all held (slow logins, a stalled database) still answers ``/health``, the
access check and every loop-only route. There are at most ``size`` threads, made once;
a request whose sync work finds them all out waits its turn (its call is queued, not
its event loop), as a connection pool would: no thread is started per request under
any load, and the database sees at most ``size`` connections a worker.

Database connections live on the threads (``CONN_MAX_AGE``) and are tidied there, as
Django's request signals would: after a request that used the thread (``reset_queries``,
``close_old_connections``, ``close_caches``), and before lending a thread that has been
idle for a second or more, so a connection past its age is not reused. The tidying is
queued on the thread itself: the request's own call runs after it, with no wait on the
loop.
"""

from __future__ import annotations

import collections
import functools
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


class SyncThreads:
    """The threads requests borrow: at most ``size``, made on demand and kept."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._idle: list[_Thread] = []
        self._made = 0
        self._waiting: collections.deque[Lent] = collections.deque()
        _pools.append(self)

    def take(self, lent: Lent) -> _Thread | None:
        """A thread for ``lent``, or None: it is queued, and ``_start`` gets one later."""
        if self._idle:
            thread = self._idle.pop()
            if time.monotonic() - thread.idle_since >= IDLE_TIDY:
                thread.submit(tidy)  # queued before the request's own call
            return thread
        if self._made < self.size:
            self._made += 1
            return _Thread()
        self._waiting.append(lent)
        return None

    def give(self, thread: _Thread) -> None:
        thread.submit(tidy)
        while self._waiting:
            lent = self._waiting.popleft()
            if lent.start(thread):
                return
        thread.idle_since = time.monotonic()
        self._idle.append(thread)

    def lend(self) -> Lent:
        return Lent(self)


class Lent(Executor):
    """One request's executor: takes a thread of the pool at its first call, keeps it.

    Calls come one at a time (the request awaits each), so while it waits for a thread
    at most one call is pending; it runs first thing on the thread it gets.
    """

    __slots__ = ("_pool", "thread", "_pending", "_released")

    def __init__(self, pool: SyncThreads) -> None:
        self._pool = pool
        self.thread: _Thread | None = None
        self._pending: list[tuple[Future[Any], Callable[[], Any]]] = []
        self._released = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        if self.thread is None and not self._pending:
            self.thread = self._pool.take(self)
        if self.thread is not None:
            return self.thread.submit(fn, *args, **kwargs)
        waiting: Future[T] = Future()
        self._pending.append((waiting, functools.partial(fn, *args, **kwargs)))
        return waiting

    def start(self, thread: _Thread) -> bool:
        """The pool hands over ``thread``; False if this request no longer wants one."""
        if self._released:
            return False
        self.thread = thread
        for waiting, call in self._pending:
            if waiting.set_running_or_notify_cancel():
                _chain(thread.submit(call), waiting)
        self._pending.clear()
        return True

    def release(self) -> None:
        """The request is over: its thread (if it took one) goes back, to be tidied."""
        self._released = True
        for waiting, _ in self._pending:  # it gave up waiting (cancelled, disconnected)
            waiting.cancel()
        self._pending.clear()
        if self.thread is not None:
            thread, self.thread = self.thread, None
            self._pool.give(thread)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.release()


def _chain(source: Future[Any], target: Future[Any]) -> None:
    def copy(done: Future[Any]) -> None:
        if done.cancelled():
            target.cancel()
        elif (exc := done.exception()) is not None:
            target.set_exception(exc)
        else:
            target.set_result(done.result())

    source.add_done_callback(copy)


_pools: list[SyncThreads] = []


def close_connections() -> None:
    """Close the database connections that idle threads keep (tests, maintenance)."""
    waits = [t.submit(_close_all) for pool in _pools for t in pool._idle]
    for done in waits:
        done.result(timeout=10)

"""Long-lived threads for requests' sync work, lent one call at a time.

Each request served by :func:`authapi.asgi.serving.serve` on its lean path gets a
:class:`Lent` executor for its ``ThreadSensitiveContext``. A sync call (an ORM query, a
sync receiver) takes a thread of the pool, and the thread goes back the moment nothing of
that request runs on it any more: calls that overlap share one thread, so Django's rule
holds that thread-sensitive code running at the same time runs on one thread. A request
holds no thread while it waits for anything else: the client reading its answer, the
password-hashing pool, the store. A request that stays on the event loop never touches a
thread at all. There are at most ``size`` threads, made once; a call that finds them all
out waits its turn (queued, not its event loop), as a connection pool would: no thread is
started per request under any load, and the database sees at most ``size`` connections a
worker.

Database connections live on the threads (``CONN_MAX_AGE``) and are tidied there, as
Django's request signals would (:func:`tidy`: ``reset_queries``,
``close_old_connections``, ``close_caches``) after each lending, and before lending a
thread that has been idle for a second or more, so a connection past its age is not
reused. The tidying is queued on the thread itself; nothing waits for it on the loop.
Django's own request-signal receivers stay connected and untouched.
"""

from __future__ import annotations

import collections
import functools
import threading
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
        # Calls end on the pool's threads: taking and giving back happen under this lock.
        self.lock = threading.RLock()
        self._idle: list[_Thread] = []
        self._made = 0
        self._waiting: collections.deque[Lent] = collections.deque()
        _pools.append(self)

    def take(self, lent: Lent) -> _Thread | None:
        """A thread for ``lent``, or None: it is queued, and ``give`` hands it one later."""
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

    @property
    def idle(self) -> int:
        with self.lock:
            return len(self._idle) + (self.size - self._made)


class Lent(Executor):
    """One request's executor: a thread of the pool while one of its calls runs."""

    __slots__ = ("_pool", "thread", "_running", "_pending", "_released")

    def __init__(self, pool: SyncThreads) -> None:
        self._pool = pool
        self.thread: _Thread | None = None
        self._running = 0  # calls submitted and not yet done
        self._pending: list[tuple[Future[Any], Callable[[], Any]]] = []
        self._released = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T]
        with self._pool.lock:
            if self.thread is None and not self._pending:
                self.thread = self._pool.take(self)
            self._running += 1
            if self.thread is not None:
                future = self.thread.submit(fn, *args, **kwargs)
            else:
                future = Future()
                self._pending.append((future, functools.partial(fn, *args, **kwargs)))
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future[Any]) -> None:
        with self._pool.lock:
            self._running -= 1
            if self._running == 0 and self.thread is not None:
                thread, self.thread = self.thread, None
                self._pool.give(thread)

    def start(self, thread: _Thread) -> bool:
        """The pool hands over ``thread``; False if no call of this request wants it."""
        live = [(w, call) for w, call in self._pending if w.set_running_or_notify_cancel()]
        self._pending.clear()
        if not live:
            return False
        self.thread = thread
        for waiting, call in live:
            _chain(thread.submit(call), waiting)
        return True

    def release(self) -> None:
        """The request is over: calls still queued for a thread are dropped. A call still
        running (its request cancelled meanwhile) gives the thread back when it ends."""
        with self._pool.lock:
            self._released = True
            pending, self._pending = self._pending, []
        for waiting, _ in pending:
            waiting.cancel()

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
    waits = []
    for pool in _pools:
        with pool.lock:
            waits += [t.submit(_close_all) for t in pool._idle]
    for done in waits:
        done.result(timeout=10)

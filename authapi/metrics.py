"""Prometheus metrics that add up across uvicorn workers.

Each worker is its own process, so prometheus-client's multiprocess mode keeps every
worker's values in memory-mapped files of one folder, and a scrape adds the files up.
prometheus-client picks that mode when it is imported, from ``PROMETHEUS_MULTIPROC_DIR``:
this module sets the variable first, hence the late imports below.

The folder is ``PROMETHEUS_MULTIPROC_DIR`` when the operator sets it (emptying it between
runs is then theirs, as prometheus-client documents), else ``<data folder>/metrics``
(0700), which this module empties itself: every process that counts holds a shared
``flock`` on its ``.lock`` for as long as it lives, and one that can take the lock
exclusively is alone, so the files there are a finished run's. Workers of one run (and a
worker that uvicorn restarts) join the files; the first worker of the next run clears
them. A dead worker's counts stay in the sum (they happened); its in-progress gauge is
dropped at the next scrape (``mark_process_dead``), as nothing else sees it die.

Counted from the security events (:func:`count`, called by ``events``), the store's round
trips (:func:`timed_store`) and each HTTP request (:func:`instrument`, an ASGI wrapper).
Label values come from fixed sets, never from the client: a scrape holds no token, no
password, no user id.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from django.core.signals import setting_changed
from django.dispatch import receiver

from authapi import conf
from authapi.errors import StoreUnavailable

logger = logging.getLogger("authapi")

ENV = "PROMETHEUS_MULTIPROC_DIR"
_lock: int | None = None  # the .lock file descriptor, held (shared) until the process ends


def _join(folder: Path) -> None:
    """Take part in the run whose files are in ``folder``; empty it if there is none."""
    global _lock
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pass  # a live process counts here: this is its run
    else:
        for stale in folder.glob("*.db"):
            stale.unlink(missing_ok=True)
    # Blocks while another process holds it exclusively, i.e. until it has emptied the folder.
    fcntl.flock(fd, fcntl.LOCK_SH)
    _lock = fd


def _prepare() -> Path | None:
    """The folder of the shared files (set in the environment), or None: this process only."""
    given = os.environ.get(ENV, "").strip()
    private = (conf.data_dir() / "metrics").resolve()
    if "prometheus_client" in sys.modules and not given:
        logger.warning(
            "prometheus_client was imported before authapi.metrics without %s: each "
            "worker reports only its own counts at /metrics",
            ENV,
        )
        return None
    if given and Path(given).resolve() != private:
        folder = Path(given)  # the operator's: theirs to empty between runs
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    _join(private)
    os.environ[ENV] = str(private)  # inherited by a child of ours: it joins, never wipes
    return private


FOLDER = _prepare()

from prometheus_client import (  # noqa: E402  (after the environment is set)
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: E402
from redis.exceptions import TimeoutError as RedisTimeoutError  # noqa: E402

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REGISTRY = CollectorRegistry()

LOGIN_OUTCOMES = ("ok", "bad_credentials", "throttled", "account_changed")
REFRESH_OUTCOMES = (
    "ok",
    "replay_tolerated",
    "reuse_detected",
    "password_changed",
    "invalid",
    "revoked",
    "user_inactive",
)
REVOCATION_CAUSES = (
    "logout",
    "logout_all",
    "session_deleted",
    "password_changed",
    "deactivated",
    "account_changed",
    "user_deleted",
    "eviction",
    "reuse",
    "admin",
    "other",
)
STORE_ERRORS = ("connection", "timeout", "other")

logins = Counter("authapi_logins", "Login attempts by outcome.", ["outcome"], registry=REGISTRY)
refreshes = Counter(
    "authapi_refreshes", "Refresh attempts by outcome.", ["outcome"], registry=REGISTRY
)
sessions_revoked = Counter(
    "authapi_sessions_revoked", "Sessions ended, by cause.", ["cause"], registry=REGISTRY
)
store_errors = Counter(
    "authapi_store_errors",
    "Store calls that failed (answered 503), by kind.",
    ["kind"],
    registry=REGISTRY,
)
store_seconds = Histogram(
    "authapi_store_duration_seconds",
    "Store round trips (one script or command, retries included).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
request_seconds = Histogram(
    "authapi_http_request_duration_seconds",
    "HTTP requests, from the first byte the app sees to the last it sends.",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
in_progress = Gauge(
    "authapi_http_requests_in_progress",
    "HTTP requests being served now.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
# Every series exists from the start, at 0: an alert on rate() needs no first event.
for _outcome in LOGIN_OUTCOMES:
    logins.labels(_outcome)
for _outcome in REFRESH_OUTCOMES:
    refreshes.labels(_outcome)
for _cause in REVOCATION_CAUSES:
    sessions_revoked.labels(_cause)
for _error in STORE_ERRORS:
    store_errors.labels(_error)

# --- security events -------------------------------------------------------------------

_SESSION_CAUSES = {
    "logout": "logout",
    "deleted": "session_deleted",
    "session_limit": "eviction",
    "reuse": "reuse",
    "password_changed": "password_changed",  # found stale at refresh
    "user_inactive": "deactivated",  # found inactive (or deleted unseen) at refresh
    "admin": "admin",
}
_USER_CAUSES = {
    "logout_all": "logout_all",
    "account_changed": "account_changed",  # password changed or user deactivated
    "password_changed": "password_changed",
    "deactivated": "deactivated",
    "user_deleted": "user_deleted",
    "admin": "admin",
}
_REFRESH_FAILURES = {"revoked": "revoked", "user_inactive": "user_inactive"}


def _count(fields: Mapping[str, Any]) -> None:
    event, reason = fields["event"], fields.get("reason")
    if event == "login_succeeded":
        logins.labels("ok").inc()
    elif event == "login_failed":
        logins.labels("account_changed" if reason == "account_changed" else "bad_credentials").inc()
    elif event == "login_throttled":
        logins.labels("throttled").inc()
    elif event == "token_refreshed":
        refreshes.labels("replay_tolerated" if fields.get("replayed") else "ok").inc()
    elif event == "refresh_reuse_detected":
        refreshes.labels("reuse_detected").inc()
    elif event == "refresh_failed":
        refreshes.labels(_REFRESH_FAILURES.get(str(reason), "invalid")).inc()
    elif event == "session_revoked":
        sessions_revoked.labels(_SESSION_CAUSES.get(str(reason), "other")).inc()
        if reason == "password_changed":
            refreshes.labels("password_changed").inc()
    elif event == "user_sessions_revoked":
        ended = fields.get("sessions") or 0
        if isinstance(ended, int) and ended > 0:
            sessions_revoked.labels(_USER_CAUSES.get(str(reason), "other")).inc(ended)


def count(fields: Mapping[str, Any]) -> None:
    """Count one security event (``events`` calls it); a failure here never fails a request."""
    try:
        _count(fields)
    except Exception:
        logger.exception("could not count the %s event", fields.get("event"))


# --- the store ---------------------------------------------------------------------------

P = ParamSpec("P")
T = TypeVar("T")


def _kind(exc: BaseException | None) -> str:
    if isinstance(exc, RedisTimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, RedisConnectionError | OSError):
        return "connection"
    return "other"


def timed_store(run: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Time each call of ``run`` (``store._run``) and count the ones that fail."""

    @functools.wraps(run)
    async def timed(*args: P.args, **kwargs: P.kwargs) -> T:
        start = time.perf_counter()
        try:
            return await run(*args, **kwargs)
        except StoreUnavailable as exc:
            store_errors.labels(_kind(exc.__cause__)).inc()
            raise
        finally:
            store_seconds.observe(time.perf_counter() - start)

    return timed


# --- HTTP requests -------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@functools.lru_cache(maxsize=1024)  # resolving costs ~60 µs; bounded, whatever clients send
def _route(path: str) -> str:
    from django.conf import settings
    from django.urls import resolve

    static = settings.STATIC_URL or "/static/"
    if path.startswith(static if static.startswith("/") else "/" + static):
        return "static"
    try:
        return "/" + str(resolve(path).route)
    except Exception:  # Resolver404, or a path Django cannot even parse
        return "unmatched"


def route_of(scope: Scope) -> str:
    """The URL pattern that serves ``scope`` ("/api/auth/sessions/<sid>"), never its path."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):
        path = path[len(root) :]
    return _route(path)


@receiver(setting_changed)
def _new_urls(*, setting: str, **kwargs: Any) -> None:
    if setting in {"ROOT_URLCONF", "STATIC_URL"}:
        _route.cache_clear()


def instrument(app: Callable[..., Awaitable[None]]) -> ASGIApp:
    """Wrap an ASGI app: each http request's duration by route, method and status."""

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        status = 0  # no answer: the client went away first

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        start = time.perf_counter()
        in_progress.inc()
        try:
            await app(scope, receive, watched)
        except BaseException:
            status = status or 500
            raise
        finally:
            in_progress.dec()
            method = str(scope.get("method", ""))
            request_seconds.labels(
                route_of(scope), method if method in _METHODS else "other", str(status)
            ).observe(time.perf_counter() - start)

    return application


# --- the scrape --------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process took the number: not ours to judge
    return True


def _forget_dead(folder: Path) -> None:
    """Drop the live gauges of workers that died (killed, crashed, restarted by uvicorn)."""
    for path in folder.glob("gauge_live*_*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            multiprocess.mark_process_dead(int(pid), str(folder))  # type: ignore[no-untyped-call]


def render() -> bytes:
    """The Prometheus text of every worker's metrics (blocking file reads: use a thread)."""
    if FOLDER is None:
        return generate_latest(REGISTRY)
    _forget_dead(FOLDER)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(FOLDER))  # type: ignore[no-untyped-call]
    return generate_latest(registry)

"""Prometheus metrics that add up across uvicorn workers.

Each worker is its own process, so the counts are kept as prometheus-client's
multiprocess mode keeps them: in memory-mapped files of one folder, added up at a scrape.

Importing this module (or ``django.setup()``) changes nothing outside it: no file, no
environment variable, no lock. The metrics and their folder are made by :func:`start`:
at the server's lifespan start-up (``authapi.asgi.lifespan``), else at the first event,
request or scrape that needs them. The folder is ``PROMETHEUS_MULTIPROC_DIR`` when the
operator set it before start (emptying it between runs is then theirs, as
prometheus-client documents), else ``<data folder>/metrics`` (0700), which this module
empties itself: every process that counts holds a shared ``flock`` on its ``.lock`` for
as long as it lives, and one that can take the lock exclusively is alone, so the files
there are a finished run's. Workers of one run (and a worker that uvicorn restarts) join
the files; the first worker of the next run clears them. A dead worker's counts stay in
the sum (they happened); its in-progress gauge is dropped at the next scrape
(``mark_process_dead``), as nothing else sees it die. The folder is handed to
prometheus-client directly (:func:`_values_in`), never through ``os.environ``.

Counted from the security events (:func:`count`, called by ``events``), the store's round
trips (:func:`timed_store`) and each HTTP request (``authapi.asgi.instrument``). Label
values come from fixed sets, never from the client: a scrape holds no token, no
password, no user id.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from authapi import conf
from authapi.errors import StoreUnavailable

logger = logging.getLogger("authapi")

ENV = "PROMETHEUS_MULTIPROC_DIR"  # read, never written
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


def _values_in(folder: Path) -> type:
    """prometheus-client's per-process memory-mapped value, in ``folder`` (as its
    ``MultiProcessValue``, which can only read the folder from ``os.environ``)."""
    files: dict[str, MmapedDict] = {}
    lock = threading.Lock()
    pid = os.getpid()

    class FolderValue:
        _multiprocess = True

        def __init__(
            self,
            typ: str,
            metric_name: str,
            name: str,
            labelnames: Any,
            labelvalues: Any,
            help_text: str,
            multiprocess_mode: str = "",
            **kwargs: Any,
        ) -> None:
            prefix = f"{typ}_{multiprocess_mode}" if typ == "gauge" else typ
            with lock:
                if prefix not in files:
                    files[prefix] = MmapedDict(str(folder / f"{prefix}_{pid}.db"))  # type: ignore[no-untyped-call]
                self._file = files[prefix]
                self._key = mmap_key(metric_name, name, labelnames, labelvalues, help_text)
                self._value, _ = self._file.read_value(self._key)  # type: ignore[no-untyped-call]

        def inc(self, amount: float) -> None:
            with lock:
                self._value += amount
                self._file.write_value(self._key, self._value, 0.0)  # type: ignore[no-untyped-call]

        def set(self, value: float, timestamp: float | None = None) -> None:
            with lock:
                self._value = value
                self._file.write_value(self._key, self._value, timestamp or 0.0)  # type: ignore[no-untyped-call]

        def set_exemplar(self, exemplar: Any) -> None:
            return  # as prometheus-client's multiprocess values

        def get(self) -> float:
            with lock:
                return float(self._value)

        def get_exemplar(self) -> None:
            return None

    return FolderValue


def _folder() -> Path | None:
    """The folder of the shared files, or None: this process only."""
    given = os.environ.get(ENV, "").strip()
    private = (conf.data_dir() / "metrics").resolve()
    if given and Path(given).resolve() != private:
        folder = Path(given)  # the operator's: theirs to empty between runs
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    _join(private)
    return private


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

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


class Metrics:
    """The service's metrics, in ``folder`` (shared by the workers) or in memory (None)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        registry = self.registry = CollectorRegistry()
        self.logins = Counter(
            "authapi_logins", "Login attempts by outcome.", ["outcome"], registry=registry
        )
        self.refreshes = Counter(
            "authapi_refreshes", "Refresh attempts by outcome.", ["outcome"], registry=registry
        )
        self.sessions_revoked = Counter(
            "authapi_sessions_revoked", "Sessions ended, by cause.", ["cause"], registry=registry
        )
        self.store_errors = Counter(
            "authapi_store_errors",
            "Store calls that failed (answered 503), by kind.",
            ["kind"],
            registry=registry,
        )
        self.store_seconds = Histogram(
            "authapi_store_duration_seconds",
            "Store round trips (one script or command, retries included).",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )
        self.request_seconds = Histogram(
            "authapi_http_request_duration_seconds",
            "HTTP requests, from the first byte the app sees to the last it sends.",
            ["route", "method", "status"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )
        self.in_progress = Gauge(
            "authapi_http_requests_in_progress",
            "HTTP requests being served now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        # Every series exists from the start, at 0: an alert on rate() needs no first event.
        for outcome in LOGIN_OUTCOMES:
            self.logins.labels(outcome)
        for outcome in REFRESH_OUTCOMES:
            self.refreshes.labels(outcome)
        for cause in REVOCATION_CAUSES:
            self.sessions_revoked.labels(cause)
        for kind in STORE_ERRORS:
            self.store_errors.labels(kind)


_metrics: Metrics | None = None
_starting = threading.Lock()


def start() -> Metrics:
    """Make the metrics (once): join or empty the folder, count there from now on."""
    global _metrics
    with _starting:
        if _metrics is None:
            folder = _folder()
            if folder is not None and not os.environ.get(ENV, "").strip():
                # prometheus-client makes each labelled series' value when it first
                # appears: from here on, in the folder. (With ENV set before it was
                # imported, it does that itself.)
                values.ValueClass = _values_in(folder)
            _metrics = Metrics(folder)
    return _metrics


def get() -> Metrics:
    """The metrics, started on first use."""
    return _metrics or start()


def __getattr__(name: str) -> Any:
    """``metrics.logins`` and the like: the started metrics' own."""
    if name == "FOLDER":
        return get().folder
    try:
        return getattr(get(), name)
    except AttributeError:
        raise AttributeError(f"module 'authapi.metrics' has no attribute {name!r}") from None


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
        get().logins.labels("ok").inc()
    elif event == "login_failed":
        get().logins.labels(
            "account_changed" if reason == "account_changed" else "bad_credentials"
        ).inc()
    elif event == "login_throttled":
        get().logins.labels("throttled").inc()
    elif event == "token_refreshed":
        get().refreshes.labels("replay_tolerated" if fields.get("replayed") else "ok").inc()
    elif event == "refresh_reuse_detected":
        get().refreshes.labels("reuse_detected").inc()
    elif event == "refresh_failed":
        get().refreshes.labels(_REFRESH_FAILURES.get(str(reason), "invalid")).inc()
    elif event == "session_revoked":
        get().sessions_revoked.labels(_SESSION_CAUSES.get(str(reason), "other")).inc()
        if reason == "password_changed":
            get().refreshes.labels("password_changed").inc()
    elif event == "user_sessions_revoked":
        ended = fields.get("sessions") or 0
        if isinstance(ended, int) and ended > 0:
            get().sessions_revoked.labels(_USER_CAUSES.get(str(reason), "other")).inc(ended)


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
            get().store_errors.labels(_kind(exc.__cause__)).inc()
            raise
        finally:
            get().store_seconds.observe(time.perf_counter() - start)

    return timed


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
    seen = get()
    if seen.folder is None:
        return generate_latest(seen.registry)
    _forget_dead(seen.folder)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(seen.folder))  # type: ignore[no-untyped-call]
    return generate_latest(registry)

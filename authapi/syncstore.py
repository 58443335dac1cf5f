"""The store from synchronous code: a blocking client over the same keys and scripts.

django-allauth's headless views, model signals and Django's ``authenticate()`` run in a
thread. Running the async client there (``async_to_sync``) would borrow the event loop
and its connections for as long as the thread waits; this client has its own pool, so a
thread waits on its own socket and the loop never waits on a thread. Calls build their
arguments with :mod:`authapi.store`'s own functions, so both doors write alike.

``redis.exceptions.RedisError`` stops here: it becomes ``StoreUnavailable`` (503).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.core.signals import setting_changed
from django.dispatch import receiver
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import Script
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry

from authapi import conf, embedded, lua, outages, redis_url, store
from authapi.errors import StoreUnavailable
from authapi.keyspace import index_key, session_key, user_prefix

T = TypeVar("T")

_RETRY = Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.2), 2, (RedisConnectionError,))


@dataclass
class SyncStore:
    redis: redis_url.SyncClient
    start: Script
    rotate: Script
    revoke_session: Script
    revoke_user: Script
    attempt: Script
    refund: Script
    profile: Script

    @classmethod
    def connect(cls) -> SyncStore:
        client = connect(decode_responses=True, health_check_interval=30, retry=_RETRY)
        return cls(
            redis=client,
            start=client.register_script(lua.START),
            rotate=client.register_script(lua.ROTATE),
            revoke_session=client.register_script(lua.REVOKE_SESSION),
            revoke_user=client.register_script(lua.REVOKE_USER),
            attempt=client.register_script(lua.ATTEMPT),
            refund=client.register_script(lua.REFUND),
            profile=client.register_script(lua.PROFILE),
        )


_lock = threading.Lock()
_store: SyncStore | None = None


def connect(**options: Any) -> redis_url.SyncClient:
    """A blocking client of the store (the embedded server's, started if need be), with
    the timeouts every sync caller keeps; StoreUnavailable when it cannot be resolved."""
    try:
        url = store.resolve_url()
    except Exception as exc:
        raise StoreUnavailable() from exc
    return redis_url.connect_sync(url, socket_connect_timeout=2, socket_timeout=2, **options)


def _get() -> SyncStore:
    global _store
    with _lock:  # held only to create the client, never across a command
        if _store is None:
            _store = SyncStore.connect()
        return _store


@receiver(setting_changed)
def _forget(*, setting: str, **kwargs: Any) -> None:
    """A new REDIS_URL (tests): the next call connects to it."""
    global _store
    if setting in {"REDIS_URL", "AUTHAPI"}:
        with _lock:
            old, _store = _store, None
        if old is not None:
            old.redis.close()


def _run(operation: Callable[[SyncStore], T]) -> T:
    client = _get()
    try:
        try:
            result = operation(client)
        except RedisConnectionError:
            if conf.redis_url() or not embedded.revive(conf.data_dir()):
                raise
            result = operation(client)  # the embedded server was gone and is back
    except (RedisError, OSError) as exc:
        outages.failed("store", "the store (sync client)", exc, None)
        raise StoreUnavailable() from exc
    outages.answered("store")
    return result


def start_session(**call: Any) -> list[str]:
    """As :func:`authapi.store.start_session`."""
    keys, args = store.start_call(**call)
    evicted: list[str] = _run(lambda s: s.start(keys=keys, args=args))
    return evicted


def rotate(**call: Any) -> store.Rotation:
    """As :func:`authapi.store.rotate`: the same script, so both doors share one rule."""
    keys, args = store.rotate_call(**call)
    return store.rotation_of(_run(lambda s: s.rotate(keys=keys, args=args)))


def session_fields(user_id: int | str, sid: str, *names: str) -> list[str | None]:
    """Fields of one session hash, in one HMGET (``uid`` first tells it lives)."""
    key = session_key(user_id, sid)
    values = _run(lambda s: s.redis.hmget(key, list(names)))
    return [None if v is None else str(v) for v in values]


def set_fields(user_id: int | str, sid: str, fields: dict[str, str]) -> bool:
    """Write fields of a live session; False (nothing written) when it has ended."""
    key = session_key(user_id, sid)

    def write(s: SyncStore) -> bool:
        if not s.redis.exists(key):
            return False
        s.redis.hset(key, mapping=dict(fields))  # type: ignore[arg-type]
        return True

    return _run(write)


def revoke_session(user_id: int | str, sid: str) -> bool:
    keys = [session_key(user_id, sid), index_key(user_id)]
    return bool(_run(lambda s: s.revoke_session(keys=keys, args=[sid])))


def revoke_user(user_id: int | str) -> int:
    keys = [index_key(user_id)]
    return int(_run(lambda s: s.revoke_user(keys=keys, args=[user_prefix(user_id)])))


def update_profile(user_id: int | str, profile: str) -> None:
    """As :func:`authapi.store.update_profile`."""
    keys = [index_key(user_id)]
    _run(lambda s: s.profile(keys=keys, args=[user_prefix(user_id), profile]))


def reserve_attempt(
    attempt: store.Attempt, rates: tuple[tuple[int, int] | None, ...]
) -> tuple[int, str]:
    """As :func:`authapi.store.reserve_attempt`."""
    args = store.attempt_args(*rates)
    return store.wait_of(_run(lambda s: s.attempt(keys=list(attempt), args=args)))


def refund_attempt(attempt: store.Attempt) -> None:
    _run(lambda s: s.refund(keys=list(attempt)))

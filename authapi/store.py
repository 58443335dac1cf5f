"""The revocation and rotation store on Redis: key names, one client per loop, the calls
that run the scripts of ``lua.py``.

Keys of one user share the hash tag ``{u<user_id>}`` so every script touches one slot
(Redis Cluster). Scripts derive session key names from the prefix they are given; they
only ever name keys of that same tag.

* ``authapi:{u42}:s:<sid>``  hash: one session (rotation family). Fields ``cur``/``prev``
  refresh jti, ``cur_iat``/``cur_exp``, ``acc_exp``, ``max_exp``, ``created``, ``last_used``,
  ``ua``, ``ip``, ``pw`` (digest of the password hash), ``prof`` (the user's public
  fields, JSON: what /me answers), ``amr`` (how the user authenticated, RFC 8176 values
  separated by spaces), ``dj`` (the Django session of an allauth flow, authapi.allauth),
  and ``rj:<jti>`` for single access tokens revoked.
  Expires when the last token issued in it would.
* ``authapi:{u42}:sessions``  sorted set of the user's sids by creation time.
* ``authapi:{throttle}:n:<network hash>:u:<username hash>``  login attempts per (client
  network, username); ``authapi:{throttle}:n:<network hash>`` per client network;
  ``authapi:{throttle}:u:<username hash>`` per username (the account). Each expires with
  its window. One hash tag for all, so one script reserves on the three at once (in a
  cluster they share a node: small counters, one command per login attempt).

``redis.exceptions.RedisError`` stops here: it becomes ``StoreUnavailable`` (503).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from asgiref.sync import async_to_sync
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from authapi import conf, embedded, metrics, outages, redis_url
from authapi.errors import StoreUnavailable
from authapi.keyspace import (  # the key layout, shared with authapi.resource
    access_fields,
    access_verdict,
)
from authapi.keyspace import dpop_jti_key as dpop_jti_key
from authapi.keyspace import index_key as index_key
from authapi.keyspace import session_key as session_key
from authapi.keyspace import user_prefix as user_prefix
from authapi.lua import (
    ACCESS_DPOP,
    ATTEMPT,
    LIST,
    PROFILE,
    PROFILE_IF,
    REFUND,
    REHASH,
    REVOKE_ACCESS,
    REVOKE_SESSION,
    REVOKE_USER,
    ROTATE,
    START,
)
from authapi.redis_url import Client

T = TypeVar("T")
logger = logging.getLogger("authapi")


class Attempt(NamedTuple):
    """The three throttle counters of a login attempt; one hash tag, so one script."""

    pair: str
    per_ip: str  # per client network: an IPv4 address, an IPv6 /64
    per_user: str


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def account_key(username: str) -> str:
    """The counter of an account's failed logins, across every network."""
    return f"authapi:{{throttle}}:u:{_digest(username.casefold())}"


def attempt_keys(network: str, username: str) -> Attempt:
    net, name = _digest(network), _digest(username.casefold())
    per_net = f"authapi:{{throttle}}:n:{net}"
    return Attempt(f"{per_net}:u:{name}", per_net, account_key(username))


_RETRY = Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.2), 2, (RedisConnectionError,))


@dataclass
class Store:
    """A client bound to one event loop, with the scripts registered on it."""

    redis: Client
    start: AsyncScript
    rotate: AsyncScript
    revoke_session: AsyncScript
    revoke_user: AsyncScript
    revoke_access: AsyncScript
    list: AsyncScript
    rehash: AsyncScript
    profile: AsyncScript
    profile_if: AsyncScript
    attempt: AsyncScript
    refund: AsyncScript
    access_dpop: AsyncScript

    async def close(self) -> None:
        """Close the client, and the sentinel clients behind a Sentinel URL."""
        await self.redis.aclose()
        pool = getattr(self.redis, "connection_pool", None)
        manager = getattr(pool, "sentinel_manager", None)
        for sentinel in getattr(manager, "sentinels", ()):
            await sentinel.aclose()

    @classmethod
    def connect(cls, url: str) -> Store:
        redis = redis_url.connect(
            url,
            decode_responses=True,
            socket_connect_timeout=2,
            socket_timeout=2,
            health_check_interval=30,
            # A pooled connection that died with a restarted server is retried on a fresh
            # one instead of failing one request per stale connection. Timeouts are not
            # retried: the request would only wait longer before its 503.
            retry=_RETRY,
        )
        return cls(
            redis=redis,
            start=redis.register_script(START),
            rotate=redis.register_script(ROTATE),
            revoke_session=redis.register_script(REVOKE_SESSION),
            revoke_user=redis.register_script(REVOKE_USER),
            revoke_access=redis.register_script(REVOKE_ACCESS),
            list=redis.register_script(LIST),
            rehash=redis.register_script(REHASH),
            profile=redis.register_script(PROFILE),
            profile_if=redis.register_script(PROFILE_IF),
            attempt=redis.register_script(ATTEMPT),
            refund=redis.register_script(REFUND),
            access_dpop=redis.register_script(ACCESS_DPOP),
        )


_stores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Store] = weakref.WeakKeyDictionary()
_url: str | None = None
_configured: str | None = None  # the REDIS_URL behind _url (None: embedded)


def resolve_url() -> str:
    """The store's URL: REDIS_URL, else the embedded server's (started if need be)."""
    return _resolve_url()


def _resolve_url() -> str:
    global _configured
    _configured = conf.redis_url()
    return _configured or embedded.ensure(conf.data_dir())


async def _get() -> Store:
    global _url
    loop = asyncio.get_running_loop()
    store = _stores.get(loop)
    if store is None:
        if _url is None:
            # Idempotent: embedded.ensure() serialises starts with its own locks.
            try:
                _url = await asyncio.to_thread(_resolve_url)
            except Exception as exc:
                raise StoreUnavailable() from exc
        store = _stores.setdefault(loop, Store.connect(_url))
    return store


_closing: set[concurrent.futures.Future[None]] = set()


@receiver(setting_changed)
def _forget(*, setting: str, **kwargs: Any) -> None:
    """A new REDIS_URL (tests): close the clients of the old one on their own loops."""
    global _url
    if setting not in {"REDIS_URL", "AUTHAPI"} or _url is None:
        return
    try:
        if conf.redis_url() == _configured:
            return
    except ImproperlyConfigured:
        pass  # a bad URL now: forget the old one; the next request answers 503 and logs why
    _url = None
    old = list(_stores.items())
    _stores.clear()
    for loop, store in old:
        if not loop.is_closed():
            future = asyncio.run_coroutine_threadsafe(store.close(), loop)
            _closing.add(future)
            future.add_done_callback(_closing.discard)


@metrics.timed_store
async def _run(operation: Callable[[Store], Awaitable[T]]) -> T:
    try:
        result = await _attempt(operation)
    except StoreUnavailable as exc:  # its cause is logged once per outage, not per request
        url = _configured or _url
        if _configured:
            where = f"REDIS_URL {outages.redact(_configured)}"
        elif url:
            where = f"the embedded valkey-server at {outages.redact(url)}"
        else:
            where = "the embedded valkey-server (not started)"
        outages.failed("store", where, exc.__cause__, url)
        raise
    outages.answered("store")
    return result


async def _attempt(operation: Callable[[Store], Awaitable[T]]) -> T:
    store = await _get()
    try:
        return await operation(store)
    except RedisConnectionError as exc:
        if not await _revive_embedded():
            raise StoreUnavailable() from exc
    except (RedisError, OSError) as exc:
        raise StoreUnavailable() from exc
    # The embedded server was gone and is back: this request gets its answer.
    try:
        return await operation(store)
    except (RedisError, OSError) as exc:
        raise StoreUnavailable() from exc


async def _revive_embedded() -> bool:
    """Start the embedded server again if its process is gone (killed, OOM); True if so.

    A server that lives but does not answer (stalled) is left alone: requests fail closed.
    """
    if conf.redis_url():
        return False  # an operator's server: not ours to start
    try:
        return await asyncio.to_thread(embedded.revive, conf.data_dir())
    except Exception:
        logger.exception("could not restart the embedded valkey-server")
        return False


def run_sync(operation: Callable[[], Awaitable[T]]) -> T:
    """Run a store coroutine from synchronous code (signals, management commands)."""

    async def main() -> T:
        loop = asyncio.get_running_loop()
        owned = loop not in _stores
        try:
            return await operation()
        finally:
            if owned and loop in _stores:
                await _stores.pop(loop).close()

    return async_to_sync(main)()


@asynccontextmanager
async def closing() -> AsyncIterator[None]:
    """Close this loop's client on exit (scripts and tests that own their loop)."""
    try:
        yield
    finally:
        store = _stores.pop(asyncio.get_running_loop(), None)
        if store is not None:
            await store.close()


class Rotation(NamedTuple):
    outcome: str  # "ok" | "same" | "reuse" | "gone" | "stale" (password changed)
    jti: str = ""
    iat: int = 0
    refresh_exp: int = 0
    access_exp: int = 0
    amr: tuple[str, ...] = ()  # the session's RFC 8176 methods; () for sessions before amr


class SessionInfo(NamedTuple):
    sid: str
    created_ms: int
    last_used_ms: int
    user_agent: str
    ip: str
    refresh_exp: int
    max_exp: int


Call = tuple[list[str], list[Any]]  # a script's KEYS and ARGV


def start_call(
    *,
    user_id: int | str,
    sid: str,
    jti: str,
    iat: int,
    refresh_exp: int,
    access_exp: int,
    max_exp: int,
    now_ms: int,
    user_agent: str,
    ip: str,
    max_sessions: int,
    password_mark: str,
    profile: str = "",
    fields: dict[str, str] | None = None,
) -> Call:
    """START's keys and arguments; ``fields`` are more of the session's (``amr``...)."""
    keys = [session_key(user_id, sid), index_key(user_id)]
    args: list[Any] = [user_prefix(user_id), now_ms, sid, str(user_id), jti, iat, refresh_exp,
            access_exp, max_exp, user_agent, ip, max_sessions, password_mark,
            profile]  # fmt: skip
    for name, value in (fields or {}).items():
        args += [name, value]
    return keys, args


async def start_session(**call: Any) -> list[str]:
    """Create a session whose current refresh token is ``jti`` (the arguments of
    :func:`start_call`); return evicted sids."""
    keys, args = start_call(**call)
    evicted: list[str] = await _run(lambda s: s.start(keys=keys, args=args))
    return evicted


def rotate_call(
    *,
    user_id: int | str,
    sid: str,
    jti: str,
    new_jti: str,
    now_ms: int,
    refresh_exp: int,
    access_exp: int,
    reuse_interval_ms: int,
    user_agent: str,
    ip: str,
    password_mark: str,
    profile: str = "",
) -> Call:
    """ROTATE's keys and arguments: spend refresh token ``jti`` of session ``sid``."""
    keys = [session_key(user_id, sid), index_key(user_id)]
    args: list[Any] = [jti, now_ms, new_jti, now_ms // 1000, refresh_exp, access_exp,
                       reuse_interval_ms, user_agent, ip, str(user_id), sid,
                       password_mark, profile]  # fmt: skip
    return keys, args


def rotation_of(reply: list[str]) -> Rotation:
    if reply[0] in {"ok", "same"}:
        amr = tuple(reply[5].split()) if len(reply) > 5 and reply[5] else ()
        return Rotation(reply[0], reply[1], int(reply[2]), int(reply[3]), int(reply[4]), amr)
    return Rotation(reply[0])


async def rotate(**call: Any) -> Rotation:
    """Spend refresh token ``jti`` of session ``sid`` atomically (the arguments of
    :func:`rotate_call`)."""
    keys, args = rotate_call(**call)
    reply: list[str] = await _run(lambda s: s.rotate(keys=keys, args=args))
    return rotation_of(reply)


async def access_allowed(user_id: int | str, sid: str, jti: str) -> bool:
    """The hot path: one HMGET says whether the session lives and the jti is not revoked."""
    key = session_key(user_id, sid)
    uid, revoked = await _run(lambda s: s.redis.hmget(key, access_fields(jti)))
    return access_verdict(user_id, uid, revoked)


async def access_profile(user_id: int | str, sid: str, jti: str) -> tuple[bool, str | None]:
    """The same single HMGET, with the user's profile snapshot: (allowed, profile JSON)."""
    key = session_key(user_id, sid)
    uid, revoked, prof = await _run(lambda s: s.redis.hmget(key, ["uid", f"rj:{jti}", "prof"]))
    return uid == str(user_id) and revoked is None, str(prof) if prof else None


async def access_allowed_dpop(
    user_id: int | str, sid: str, jti: str, proof_key: str, proof_ttl_ms: int
) -> tuple[bool, bool, str | None]:
    """The access check of a DPoP-bound token in one command: (allowed, proof never seen
    before, profile JSON)."""
    keys = [session_key(user_id, sid), proof_key]
    uid, revoked, prof, fresh = await _run(
        lambda s: s.access_dpop(keys=keys, args=[f"rj:{jti}", proof_ttl_ms])
    )
    allowed = uid == str(user_id) and revoked is None
    return allowed, bool(int(fresh)), str(prof) if prof else None


async def claim_dpop_jti(proof_key: str, proof_ttl_ms: int) -> bool:
    """Claim a proof's jti at login or refresh; False when it was claimed before."""
    return bool(await _run(lambda s: s.redis.set(proof_key, "1", nx=True, px=proof_ttl_ms)))


async def update_profile(user_id: int | str, profile: str) -> None:
    """Show a user's changed public fields in every session of theirs."""
    keys = [index_key(user_id)]
    await _run(lambda s: s.profile(keys=keys, args=[user_prefix(user_id), profile]))


async def catch_up_profile(user_id: int | str, sid: str, written: str, fresh: str) -> bool:
    """Replace one session's snapshot ``written`` by ``fresh``, read since; False when
    something newer is there already."""
    keys = [session_key(user_id, sid)]
    return bool(await _run(lambda s: s.profile_if(keys=keys, args=[written, fresh])))


async def refresh_is_current(user_id: int | str, sid: str, jti: str) -> bool:
    """Whether ``jti`` is the live, unspent refresh token of its session."""
    key = session_key(user_id, sid)
    uid, cur = await _run(lambda s: s.redis.hmget(key, ["uid", "cur"]))
    return uid == str(user_id) and cur == jti


async def revoke_session(user_id: int | str, sid: str) -> bool:
    """End one session and every token issued in it; False if it was already gone."""
    keys = [session_key(user_id, sid), index_key(user_id)]
    return bool(await _run(lambda s: s.revoke_session(keys=keys, args=[sid])))


async def revoke_access(user_id: int | str, sid: str, jti: str) -> None:
    """Refuse one access token from now on (its session lives on)."""
    keys = [session_key(user_id, sid)]
    await _run(lambda s: s.revoke_access(keys=keys, args=[jti]))


async def revoke_user(user_id: int | str) -> int:
    """End every session of a user; return how many there were."""
    keys = [index_key(user_id)]
    return int(await _run(lambda s: s.revoke_user(keys=keys, args=[user_prefix(user_id)])))


async def remark_password(user_id: int | str, old: str, new: str) -> None:
    """Carry the user's sessions over to a re-hash of the same password."""
    keys = [index_key(user_id)]
    await _run(lambda s: s.rehash(keys=keys, args=[user_prefix(user_id), old, new]))


async def list_sessions(user_id: int | str) -> list[SessionInfo]:
    """The user's live sessions, oldest first: O(sessions of that user)."""
    keys = [index_key(user_id)]
    rows: list[list[Any]] = await _run(lambda s: s.list(keys=keys, args=[user_prefix(user_id)]))
    return [SessionInfo(r[0], int(r[1]), int(r[2]), r[3], r[4], int(r[5]), int(r[6])) for r in rows]


async def reserve_attempt(
    attempt: Attempt,
    per_pair: tuple[int, int] | None,
    per_ip: tuple[int, int] | None,
    per_user: tuple[int, int] | None = None,
) -> tuple[int, str]:
    """Count one attempt on every allowance (``(count, seconds)``, None: off); when one is
    used up count nothing and return the seconds to wait and which one it is
    (``pair``, ``network``, ``account``); else ``(0, "")``."""
    args = attempt_args(per_pair, per_ip, per_user)
    return wait_of(await _run(lambda s: s.attempt(keys=list(attempt), args=args)))


def attempt_args(*rates: tuple[int, int] | None) -> list[int]:
    """ATTEMPT's arguments: each allowance as (count, milliseconds); (0, 0) is off."""
    args: list[int] = []
    for limit, seconds in (rate or (0, 0) for rate in rates):
        args += [limit, seconds * 1000]
    return args


def wait_of(reply: list[Any]) -> tuple[int, str]:
    ms, which = reply
    return (-(-int(ms) // 1000), str(which)) if int(ms) > 0 else (0, "")


async def refund_attempt(attempt: Attempt) -> None:
    await _run(lambda s: s.refund(keys=list(attempt)))


async def forget_failures(key: str) -> int:
    """Delete one throttle counter; return the count it held."""
    return int(await _run(lambda s: s.redis.getdel(key)) or 0)


async def ping() -> bool:
    """Whether the store answers."""
    try:
        return bool(await _run(lambda s: s.redis.ping()))
    except StoreUnavailable:
        return False

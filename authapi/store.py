"""The revocation and rotation store on Redis: key names, Lua scripts, one client per loop.

Keys of one user share the hash tag ``{u<user_id>}`` so every script touches one slot
(Redis Cluster). Scripts derive session key names from the prefix they are given; they
only ever name keys of that same tag.

* ``authapi:{u42}:s:<sid>``  hash: one session (rotation family). Fields ``cur``/``prev``
  refresh jti, ``cur_iat``/``cur_exp``, ``acc_exp``, ``max_exp``, ``created``, ``last_used``,
  ``ua``, ``ip``, and ``rj:<jti>`` for single access tokens revoked. Expires when the last
  token issued in it would.
* ``authapi:{u42}:sessions``  sorted set of the user's sids by creation time.
* ``authapi:throttle:<hash>``  failed-login counter per (client IP, username).

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
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from authapi import embedded, redis_url
from authapi.errors import StoreUnavailable
from authapi.redis_url import Client

T = TypeVar("T")
logger = logging.getLogger("authapi")

# Prune the user's index of expired sessions, evict the oldest past the cap, add this one.
START = """
local idx, prefix, now = KEYS[2], ARGV[1], tonumber(ARGV[2])
local live = {}
for _, sid in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
  if redis.call('EXISTS', prefix .. 's:' .. sid) == 1 then
    table.insert(live, sid)
  else
    redis.call('ZREM', idx, sid)
  end
end
local evicted = {}
for i = 1, #live - tonumber(ARGV[12]) + 1 do
  redis.call('DEL', prefix .. 's:' .. live[i])
  redis.call('ZREM', idx, live[i])
  table.insert(evicted, live[i])
end
redis.call('HSET', KEYS[1], 'uid', ARGV[4], 'cur', ARGV[5], 'cur_iat', ARGV[6],
  'cur_exp', ARGV[7], 'acc_exp', ARGV[8], 'max_exp', ARGV[9], 'created', now,
  'last_used', now, 'ua', ARGV[10], 'ip', ARGV[11], 'pw', ARGV[13])
local expire_at = math.max(tonumber(ARGV[7]), tonumber(ARGV[8])) * 1000
redis.call('PEXPIREAT', KEYS[1], expire_at)
redis.call('ZADD', idx, now, ARGV[3])
local ttl = redis.call('PTTL', idx)
if ttl < 0 or now + ttl < expire_at then redis.call('PEXPIREAT', idx, expire_at) end
return evicted
"""

# Spend the presented refresh token: advance the session, hand back the same successor
# (replay of the parent inside the interval), or revoke the whole session (reuse).
ROTATE = """
local s, idx = KEYS[1], KEYS[2]
local f = redis.call('HMGET', s, 'cur', 'prev', 'prev_at', 'cur_iat', 'cur_exp', 'max_exp',
  'acc_exp', 'uid', 'pw')
if not f[1] or f[8] ~= ARGV[10] then return {'gone'} end
if f[9] and f[9] ~= ARGV[12] then
  -- the password changed behind our back (QuerySet.update, raw SQL): end the session
  redis.call('DEL', s)
  redis.call('ZREM', idx, ARGV[11])
  return {'stale'}
end
local now, jti = tonumber(ARGV[2]), ARGV[1]
if f[1] == ARGV[3] then
  -- this very call already ran (a client retry after a lost reply): answer it again
  return {'ok', ARGV[3], f[4], f[5], f[7]}
end
local max_exp, acc_old = tonumber(f[6]), tonumber(f[7])
local aexp = math.min(tonumber(ARGV[6]), max_exp)
local function keep_alive(until_s)
  local expire_at = math.max(until_s, aexp, acc_old) * 1000
  redis.call('PEXPIREAT', s, expire_at)
  local ttl = redis.call('PTTL', idx)
  if ttl < 0 or now + ttl < expire_at then redis.call('PEXPIREAT', idx, expire_at) end
  redis.call('HSET', s, 'acc_exp', math.max(aexp, acc_old), 'last_used', now,
    'ua', ARGV[8], 'ip', ARGV[9])
end
if f[1] == jti then
  if tonumber(f[5]) * 1000 <= now then return {'gone'} end
  local rexp = math.min(tonumber(ARGV[5]), max_exp)
  redis.call('HSET', s, 'prev', jti, 'prev_at', now, 'cur', ARGV[3], 'cur_iat', ARGV[4],
    'cur_exp', rexp)
  keep_alive(rexp)
  return {'ok', ARGV[3], ARGV[4], tostring(rexp), tostring(aexp)}
end
local interval = tonumber(ARGV[7])
if f[2] == jti and interval > 0 and now - tonumber(f[3]) <= interval
    and tonumber(f[5]) * 1000 > now then
  keep_alive(tonumber(f[5]))
  return {'same', f[1], f[4], f[5], tostring(aexp)}
end
redis.call('DEL', s)
redis.call('ZREM', idx, ARGV[11])
return {'reuse'}
"""

REVOKE_SESSION = """
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n
"""

REVOKE_USER = """
local n = 0
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  n = n + redis.call('DEL', ARGV[1] .. 's:' .. sid)
end
redis.call('DEL', KEYS[1])
return n
"""

REVOKE_ACCESS = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'rj:' .. ARGV[1], '1')
  return 1
end
return 0
"""

# A hasher upgrade re-hashes the same password: sessions keep living under the new hash.
REHASH = """
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local key = ARGV[1] .. 's:' .. sid
  if redis.call('HGET', key, 'pw') == ARGV[2] then redis.call('HSET', key, 'pw', ARGV[3]) end
end
return 0
"""

LIST = """
local out = {}
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local f = redis.call('HMGET', ARGV[1] .. 's:' .. sid, 'created', 'last_used', 'ua', 'ip',
    'cur_exp', 'max_exp')
  if f[1] then
    table.insert(out, {sid, f[1], f[2], f[3] or '', f[4] or '', f[5], f[6]})
  else
    redis.call('ZREM', KEYS[1], sid)
  end
end
return out
"""

FAIL = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""


def user_prefix(user_id: int | str) -> str:
    return f"authapi:{{u{user_id}}}:"


def session_key(user_id: int | str, sid: str) -> str:
    return f"{user_prefix(user_id)}s:{sid}"


def index_key(user_id: int | str) -> str:
    return f"{user_prefix(user_id)}sessions"


def throttle_key(ip: str, username: str) -> str:
    digest = hashlib.sha256(f"{ip}\x00{username.casefold()}".encode()).hexdigest()[:32]
    return f"authapi:throttle:{digest}"


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
    fail: AsyncScript

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
            fail=redis.register_script(FAIL),
        )


_stores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Store] = weakref.WeakKeyDictionary()
_url: str | None = None


def _resolve_url() -> str:
    configured: str | None = getattr(settings, "REDIS_URL", None)
    if configured:
        return configured
    return embedded.ensure(settings.DATA_DIR)


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
    if setting != "REDIS_URL":
        return
    _url = None
    old = list(_stores.items())
    _stores.clear()
    for loop, store in old:
        if not loop.is_closed():
            future = asyncio.run_coroutine_threadsafe(store.close(), loop)
            _closing.add(future)
            future.add_done_callback(_closing.discard)


async def _run(operation: Callable[[Store], Awaitable[T]]) -> T:
    store = await _get()
    try:
        return await operation(store)
    except RedisConnectionError as exc:
        await _revive_embedded()
        raise StoreUnavailable() from exc
    except (RedisError, OSError) as exc:
        raise StoreUnavailable() from exc


async def _revive_embedded() -> None:
    """The embedded server died (killed, OOM): start it again so the next request works."""
    if getattr(settings, "REDIS_URL", None):
        return  # an operator's server: not ours to start
    try:
        await asyncio.to_thread(embedded.ensure, settings.DATA_DIR)
    except Exception:
        logger.exception("could not restart the embedded valkey-server")


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


class SessionInfo(NamedTuple):
    sid: str
    created_ms: int
    last_used_ms: int
    user_agent: str
    ip: str
    refresh_exp: int
    max_exp: int


async def start_session(
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
) -> list[str]:
    """Create a session whose current refresh token is ``jti``; return evicted sids."""
    keys = [session_key(user_id, sid), index_key(user_id)]
    args: list[Any] = [user_prefix(user_id), now_ms, sid, str(user_id), jti, iat, refresh_exp,
            access_exp, max_exp, user_agent, ip, max_sessions, password_mark]  # fmt: skip
    evicted: list[str] = await _run(lambda s: s.start(keys=keys, args=args))
    return evicted


async def rotate(
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
) -> Rotation:
    """Spend refresh token ``jti`` of session ``sid`` atomically."""
    keys = [session_key(user_id, sid), index_key(user_id)]
    args: list[Any] = [jti, now_ms, new_jti, now_ms // 1000, refresh_exp, access_exp,
                       reuse_interval_ms, user_agent, ip, str(user_id), sid,
                       password_mark]  # fmt: skip
    reply: list[str] = await _run(lambda s: s.rotate(keys=keys, args=args))
    if reply[0] in {"ok", "same"}:
        return Rotation(reply[0], reply[1], int(reply[2]), int(reply[3]), int(reply[4]))
    return Rotation(reply[0])


async def access_allowed(user_id: int | str, sid: str, jti: str) -> bool:
    """The hot path: one HMGET says whether the session lives and the jti is not revoked."""
    key = session_key(user_id, sid)
    uid, revoked = await _run(lambda s: s.redis.hmget(key, ["uid", f"rj:{jti}"]))
    return uid == str(user_id) and revoked is None


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


async def throttle_wait(key: str, limit: int) -> int:
    """Seconds the caller must wait before trying again; 0 when allowed."""
    count, ttl = await _run(lambda s: _count_and_ttl(s, key))
    if count is None or int(count) < limit:
        return 0
    return max(1, -(-int(ttl) // 1000))


async def _count_and_ttl(store: Store, key: str) -> list[Any]:
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.get(key)
        pipe.pttl(key)
        result: list[Any] = await pipe.execute()
    return result


async def throttle_fail(key: str, period_s: int) -> int:
    """Count one failed login; the window starts at the first failure."""
    return int(await _run(lambda s: s.fail(keys=[key], args=[period_s * 1000])))


async def throttle_clear(key: str) -> None:
    await _run(lambda s: s.redis.delete(key))


async def ping() -> bool:
    """Whether the store answers."""
    try:
        return bool(await _run(lambda s: s.redis.ping()))
    except StoreUnavailable:
        return False

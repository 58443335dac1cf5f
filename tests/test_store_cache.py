"""``authapi.cache.StoreCache`` beside Django's own ``RedisCache``: the same calls give the
same answers on both supported Django lines (the suite runs on each), against the same
real valkey-server; only ``clear()`` differs, on purpose (its own keys, never FLUSHDB),
and an unreachable store is our 503, not a Redis error."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.cache.backends.redis import RedisCache
from django.test import override_settings

from authapi import cache as store_cache
from authapi.errors import StoreUnavailable
from tests.redis_server import RedisServer

MISSING = object()


@pytest.fixture
def pair() -> Iterator[tuple[Any, Any]]:
    """(ours, Django's), each under a prefix of its own on the suite's valkey."""
    ours = store_cache.StoreCache("", {"KEY_PREFIX": "side-ours"})
    django_side = RedisCache(os.environ["REDIS_URL"], {"KEY_PREFIX": "side-django"})
    yield ours, django_side
    with redis.Redis.from_url(os.environ["REDIS_URL"]) as raw:
        for key in raw.scan_iter(match="*side-*"):
            raw.delete(key)


def _outcome(call: Callable[[Any], Any], cache: Any) -> Any:
    try:
        return ("ok", call(cache))
    except Exception as exc:  # the same error type on both sides
        return ("raised", type(exc).__name__)


SCRIPT: list[tuple[str, Callable[[Any], Any]]] = [
    ("get missing", lambda c: c.get("a")),
    ("get missing, default", lambda c: c.get("a", "fallback")),
    ("set then get", lambda c: (c.set("a", {"n": 1, "l": [1, 2]}, 60), c.get("a"))),
    ("add existing", lambda c: (c.add("a", "other", 60), c.get("a"))),
    ("add new", lambda c: (c.add("b", 7, 60), c.get("b"))),
    ("incr", lambda c: (c.incr("b"), c.incr("b", 5), c.get("b"))),
    ("decr", lambda c: (c.decr("b", 2), c.get("b"))),
    ("incr missing", lambda c: c.incr("nothing")),
    ("has_key", lambda c: (c.has_key("a"), c.has_key("nothing"))),
    ("touch", lambda c: (c.touch("a", 120), c.touch("nothing", 120))),
    (
        "set_many/get_many",
        lambda c: (c.set_many({"x": 1, "y": "2"}, 60), sorted(c.get_many(["x", "y", "z"]).items())),
    ),  # fmt: skip
    ("delete", lambda c: (c.delete("x"), c.delete("x"), c.get("x"))),
    ("delete_many", lambda c: (c.delete_many(["y", "a"]), c.get("y"), c.get("a"))),
    ("timeout 0 expires at once", lambda c: (c.set("gone", 1, 0), c.get("gone"))),
    ("no timeout", lambda c: (c.set("kept", b"\x00bytes", None), c.get("kept"))),
    (
        "big int and str",
        lambda c: (c.set("n", 2**70, 60), c.get("n"), c.set("s", "é", 60), c.get("s")),
    ),  # fmt: skip
    ("get_or_set", lambda c: (c.get_or_set("g", lambda: "made", 60), c.get("g"))),
]


@pytest.mark.parametrize("step", range(len(SCRIPT)), ids=[name for name, _ in SCRIPT])
def test_each_call_answers_as_djangos_redis_cache(pair, step):
    ours, django_side = pair
    for name, call in SCRIPT[: step + 1]:  # the script so far, on both: same state
        mine, theirs = _outcome(call, ours), _outcome(call, django_side)
        assert mine == theirs, name


def test_the_keys_are_under_our_prefix_and_expire(pair):
    ours, _ = pair
    ours.set("probe", 1, 30)
    with redis.Redis.from_url(os.environ["REDIS_URL"]) as raw:
        keys = [key.decode() for key in raw.scan_iter(match="*probe*")]
        assert keys and all(key.startswith(f"{store_cache.PREFIX}:") for key in keys), keys
        assert 0 < raw.ttl(keys[0]) <= 30


def test_clear_deletes_only_its_own_keys(pair):
    ours, django_side = pair
    ours.set("mine", 1, 60)
    django_side.set("theirs", 1, 60)
    with redis.Redis.from_url(os.environ["REDIS_URL"]) as raw:
        raw.set("a-session-of-ours", "kept", ex=60)
        assert ours.clear() is True
        assert ours.get("mine") is None
        assert django_side.get("theirs") == 1
        assert raw.get("a-session-of-ours") == b"kept"
        raw.delete("a-session-of-ours")


@pytest.fixture
def own_store() -> Iterator[RedisServer]:
    """A valkey-server of the test's own, which it may stop and pause; the cache on it."""
    server = RedisServer()
    server.start()
    ours = {**getattr(settings, "AUTHAPI", {}), "REDIS_URL": server.url}
    try:
        with override_settings(AUTHAPI=ours, REDIS_URL=server.url):
            yield server
    finally:
        if server.process is not None:
            os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


@pytest.mark.parametrize("fault", ["stopped", "paused"])
def test_an_unreachable_store_is_our_503_not_a_redis_error(own_store, fault):
    ours = store_cache.StoreCache("", {})
    ours.set("before", 1, 60)
    assert ours.get("before") == 1
    assert own_store.process is not None
    if fault == "stopped":
        own_store.stop()
    else:
        os.kill(own_store.process.pid, signal.SIGSTOP)
    for call in (lambda: ours.get("before"), lambda: ours.set("x", 1, 60),
                 lambda: ours.add("y", 1, 60), lambda: ours.incr("before")):  # fmt: skip
        with pytest.raises(StoreUnavailable):
            call()

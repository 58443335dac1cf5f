"""Login throttling: every attempt is reserved before its password is checked.

Three allowances, counted together by one script before any hashing: failed logins per
(client network, username), ``AUTHAPI_LOGIN_RATE`` (5/min); per client network across
usernames, ``AUTHAPI_LOGIN_RATE_PER_IP`` (60/min: credential stuffing from one place);
and per username across networks, ``AUTHAPI_LOGIN_RATE_PER_USER`` (30/hour: one account
guessed at from many places). An attempt that would pass any is refused with 429 and is
not counted; a successful login gives its attempt back. So N concurrent wrong passwords
get at most the allowance of 401s, whatever their timing. Every door that checks a
password reserves here: the API's login and its simplejwt alias, and Django's
``authenticate()`` (the admin) through :class:`authapi.backends.ThrottledModelBackend`.

A client network is an IPv4 address alone, or the ``/AUTHAPI_IPV6_PREFIX`` (64) network
of an IPv6 address: one IPv6 client is handed a whole /64, 2^64 addresses to walk through
a per-address limit. An IPv4-mapped IPv6 address (``::ffff:192.0.2.1``) is its IPv4.

The account allowance is the trade-off: anyone can spend it, and the account's password
logins are then refused (the right password too) until the window passes or an operator
runs ``manage.py authapi unlock USERNAME``. Sessions already open are untouched.
"""

from __future__ import annotations

import ipaddress

from django.http import HttpRequest

from authapi import conf, events, store, syncstore
from authapi.client import client_ip
from authapi.errors import Throttled


def network(address: str, ipv6_prefix: int | None = None) -> str:
    """What an address is counted as: an IPv4 address itself, an IPv6 address's network."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # no address (a test client, a unix socket): counted as given
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    prefix = conf.get().ipv6_prefix if ipv6_prefix is None else ipv6_prefix
    host_bits = 128 - prefix
    base = int(ip) >> host_bits << host_bits
    return str(ipaddress.IPv6Network((base, prefix)))


def _allowances(request: HttpRequest, username: str) -> tuple[store.Attempt, Rates] | None:
    cfg = conf.get()
    rates = (cfg.login_rate, cfg.login_rate_per_ip, cfg.login_rate_per_user)
    if rates == (None, None, None):
        return None
    return store.attempt_keys(network(client_ip(request), cfg.ipv6_prefix), username), rates


Rates = tuple[tuple[int, int] | None, ...]


async def reserve(request: HttpRequest, username: str) -> store.Attempt | None:
    """Count one login attempt, or raise Throttled (with Retry-After) if none is left."""
    planned = _allowances(request, username)
    if planned is None:
        return None
    attempt, rates = planned
    wait, limit = await store.reserve_attempt(attempt, *rates)
    if wait:
        await events.emit("login_throttled", request, retry_after=wait, limit=limit)
        raise Throttled(wait)
    return attempt


def reserve_sync(request: HttpRequest, username: str) -> store.Attempt | None:
    """:func:`reserve` from a thread (Django's ``authenticate()``), on the sync client."""
    planned = _allowances(request, username)
    if planned is None:
        return None
    attempt, rates = planned
    wait, limit = syncstore.reserve_attempt(attempt, rates)
    if wait:
        events.emit_sync("login_throttled", retry_after=wait, limit=limit)
        raise Throttled(wait)
    return attempt


def succeeded_sync(attempt: store.Attempt | None) -> None:
    if attempt is not None:
        syncstore.refund_attempt(attempt)


async def succeeded(attempt: store.Attempt | None) -> None:
    """The password was right: forget this username's failures here, give the attempt back."""
    if attempt is not None:
        await store.refund_attempt(attempt)


async def unlock(username: str) -> bool:
    """Forget the account's failed logins everywhere; True if they had locked it."""
    failures = await store.forget_failures(store.account_key(username))
    rate = conf.get().login_rate_per_user
    return rate is not None and failures >= rate[0]

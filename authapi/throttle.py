"""Failed-login throttling per (client IP, username), and who the client is.

The socket peer is the client unless it is one of ``AUTHAPI_TRUSTED_PROXIES``; then the
right-most address of ``X-Forwarded-For`` that is not a trusted proxy is.

uvicorn's own ``--proxy-headers`` (on by default for peers in ``FORWARDED_ALLOW_IPS``,
127.0.0.1 unless set) puts an address from ``X-Forwarded-For`` in the peer's place before
we see the request, so any local process could pick its throttle bucket. We undo that:
a peer that is one of the request's own forwarded addresses was put there by the server,
and the real peer was the server's trusted proxy.
"""

from __future__ import annotations

import ipaddress
import os

from django.http import HttpRequest

from authapi import conf, store
from authapi.errors import Throttled

MAX_USER_AGENT = 256


def client_ip(request: HttpRequest) -> str:
    """The client's IP address, honouring X-Forwarded-For only from trusted proxies."""
    forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR", ""))
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    peer = str(request.META.get("REMOTE_ADDR") or "")
    if peer and peer in {_host(hop) for hop in hops}:
        peer = _server_proxy()  # the ASGI server swapped a forwarded address in
    proxies = conf.get().trusted_proxies
    if not proxies or not _trusted(peer, proxies):
        return peer
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # garbage in the chain: trust nothing past it
        if not _trusted(hop, proxies):
            return hop
    return hops[0] if hops else peer


def _host(hop: str) -> str:
    """The address of an X-Forwarded-For entry that may carry a port (``[::1]:80``)."""
    if hop.startswith("["):
        return hop[1:].partition("]")[0]
    host, sep, port = hop.rpartition(":")
    return host if sep and port.isdigit() and host.count(":") == 0 else hop


def _server_proxy() -> str:
    """The peer the ASGI server trusted with X-Forwarded-For (uvicorn's first address)."""
    for item in os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1").split(","):
        try:
            return str(ipaddress.ip_address(item.strip()))
        except ValueError:
            continue
    return "127.0.0.1"


def _trusted(address: str, proxies: tuple[conf.Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def user_agent(request: HttpRequest) -> str:
    return str(request.META.get("HTTP_USER_AGENT", ""))[:MAX_USER_AGENT]


async def check(request: HttpRequest, username: str) -> str | None:
    """Raise Throttled when this client has used up its failed logins; return the key."""
    rate = conf.get().login_rate
    if rate is None:
        return None
    key = store.throttle_key(client_ip(request), username)
    wait = await store.throttle_wait(key, rate[0])
    if wait:
        raise Throttled(wait)
    return key


async def failed(key: str | None) -> None:
    rate = conf.get().login_rate
    if key is not None and rate is not None:
        await store.throttle_fail(key, rate[1])


async def succeeded(key: str | None) -> None:
    if key is not None:
        await store.throttle_clear(key)

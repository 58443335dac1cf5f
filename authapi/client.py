"""Who the client is: its IP address and user agent.

The socket peer is the client unless it is one of ``AUTHAPI_TRUSTED_PROXIES``; then the
right-most ``X-Forwarded-For`` address that is not a trusted proxy is. Nothing is ever
inferred from what ``X-Forwarded-For`` contains when the peer is not trusted.

uvicorn's ``--proxy-headers`` (on unless ``--no-proxy-headers``; it trusts 127.0.0.1 by
default) rewrites the ASGI ``client`` and ``scheme`` from ``X-Forwarded-*`` before the
application runs, so any local process could choose its address. :func:`restore_peer`
puts back what the connection itself says; the documented launches turn the rewriting
off, and :func:`warn_if_server_rewrites` says so at start-up where it is on.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import MutableMapping
from typing import Any

from django.http import HttpRequest

from authapi import conf

logger = logging.getLogger("authapi")
MAX_USER_AGENT = 256


def client_ip(request: HttpRequest) -> str:
    """The client's IP address, honouring X-Forwarded-For only from trusted proxies."""
    peer = str(request.META.get("REMOTE_ADDR") or "")
    proxies = conf.get().trusted_proxies
    if not proxies or not _trusted(peer, proxies):
        return peer
    forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR", ""))
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_ip(hop):
            return peer  # garbage in the chain: trust nothing past it
        if not _trusted(hop, proxies):
            return hop
    return hops[0] if hops else peer


def user_agent(request: HttpRequest) -> str:
    return str(request.META.get("HTTP_USER_AGENT", ""))[:MAX_USER_AGENT]


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _trusted(address: str, proxies: tuple[conf.Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def restore_peer(scope: MutableMapping[str, Any], send: Any) -> None:
    """Put the connection's own peer and scheme back into an http ``scope``.

    Under uvicorn ``send`` is a method of the request cycle, which holds the transport;
    elsewhere there is nothing to undo and the scope is left as the server made it.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        return
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        scope["client"] = (str(peer[0]), int(peer[1]))
    scope["scheme"] = "https" if transport.get_extra_info("sslcontext") else "http"


def warn_if_server_rewrites(receive: Any) -> None:
    """Log a warning when uvicorn was started with its proxy-header rewriting on."""
    config = getattr(getattr(receive, "__self__", None), "config", None)
    if getattr(config, "proxy_headers", False):
        logger.warning(
            "uvicorn rewrites client addresses from X-Forwarded-For (--proxy-headers, its "
            "default). authapi uses the socket peer and AUTHAPI_TRUSTED_PROXIES instead; "
            "start uvicorn with --no-proxy-headers."
        )

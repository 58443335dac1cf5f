"""Security events: one Django signal each, one structured log line on ``authapi.security``
and a count in ``authapi.metrics``.

Fields are the event name, user id, session id, client IP and user agent; never a token,
a password or a key. Receivers get the same fields as keyword arguments (plus ``request``).
``login_throttled`` (429, nothing checked; ``limit`` names the allowance used up:
``pair``, ``network`` or ``account``) and ``refresh_failed`` (``reason``: ``invalid``
for an expired or malformed token, ``revoked``, ``user_inactive``) are sent by the code
that refuses; ``token_refreshed`` with ``replayed=True`` is a tolerated replay.
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal
from django.http import HttpRequest

from authapi import metrics
from authapi.client import client_ip, user_agent

logger = logging.getLogger("authapi.security")

login_succeeded = Signal()
login_failed = Signal()
login_throttled = Signal()
token_refreshed = Signal()
refresh_failed = Signal()
refresh_reuse_detected = Signal()
session_revoked = Signal()
user_sessions_revoked = Signal()

_SIGNALS = {
    "login_succeeded": (login_succeeded, logging.INFO),
    "login_failed": (login_failed, logging.INFO),
    "login_throttled": (login_throttled, logging.INFO),
    "token_refreshed": (token_refreshed, logging.INFO),
    "refresh_failed": (refresh_failed, logging.INFO),
    "refresh_reuse_detected": (refresh_reuse_detected, logging.WARNING),
    "session_revoked": (session_revoked, logging.INFO),
    "user_sessions_revoked": (user_sessions_revoked, logging.INFO),
}


def _fields(
    event: str, request: HttpRequest | None, user_id: Any, session_id: str | None, **more: Any
) -> dict[str, Any]:
    return {
        "event": event,
        "user_id": user_id,
        "session_id": session_id,
        "ip": client_ip(request) if request is not None else None,
        "user_agent": user_agent(request) if request is not None else None,
        **more,
    }


def _record(fields: dict[str, Any]) -> None:
    """Log the event and count it."""
    _, level = _SIGNALS[fields["event"]]
    text = " ".join(f"{k}={v!r}" for k, v in fields.items() if v is not None)
    logger.log(level, text, extra={"security": fields})
    metrics.count(fields)


async def emit(
    event: str,
    request: HttpRequest | None = None,
    *,
    user_id: Any = None,
    session_id: str | None = None,
    **more: Any,
) -> None:
    """Send the event's signal (robustly) and log it."""
    fields = _fields(event, request, user_id, session_id, **more)
    _record(fields)
    signal, _ = _SIGNALS[event]
    if signal.has_listeners(None):
        for receiver, result in await signal.asend_robust(None, request=request, **fields):
            if isinstance(result, Exception):
                logger.error("receiver %r of %s failed: %r", receiver, event, result)


def emit_sync(
    event: str, *, user_id: Any = None, session_id: str | None = None, **more: Any
) -> None:
    """Same as :func:`emit`, from synchronous code (model signals, commands)."""
    fields = _fields(event, None, user_id, session_id, **more)
    _record(fields)
    signal, _ = _SIGNALS[event]
    for receiver, result in signal.send_robust(None, request=None, **fields):
        if isinstance(result, Exception):
            logger.error("receiver %r of %s failed: %r", receiver, event, result)

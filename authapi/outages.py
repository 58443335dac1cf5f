"""One log line when a backing service stops answering, one when it answers again.

Every request of an outage is a 503; a line per request ("Service Unavailable:
/api/auth/login", Django's) buries the one thing an operator needs: which service, and
what it said. So the first failure of an outage logs its cause (ERROR on ``authapi``), the
rest only count, and the first success logs the recovery (WARNING: it shows wherever the
error did). Per process: each worker says it once. URLs are logged without passwords.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.db import connections
from django.db.backends.signals import connection_created
from django.dispatch import receiver

logger = logging.getLogger("authapi")

_SECRET_PARAMS = ("password", "pass", "secret", "token")


@dataclass
class _Outage:
    since: float
    where: str
    refused: int = 1


_lock = threading.Lock()
_down: dict[str, _Outage] = {}


def redact(url: str) -> str:
    """``url`` with its password (userinfo or ``?password=``) replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***"
    rest, qsep, query = rest.partition("?")
    credentials, at, hosts = rest.rpartition("@")
    if at:
        user, colon, _ = credentials.partition(":")
        rest = f"{user}:***@{hosts}" if colon else f"{user}@{hosts}"
    if qsep:
        pairs = []
        for pair in query.split("&"):
            name, eq, _ = pair.partition("=")
            secret = any(word in name.lower() for word in _SECRET_PARAMS)
            pairs.append(f"{name}=***" if eq and secret else pair)
        rest = f"{rest}?{'&'.join(pairs)}"
    return f"{scheme}://{rest}"


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def describe(cause: BaseException | None, url: str | None = None) -> str:
    """``Type: message`` of ``cause``, with ``url``'s password taken out if it shows."""
    if cause is None:
        return "no cause recorded"
    text = f"{type(cause).__name__}: {cause}".strip()
    password = _password(url) if url else None
    if password:
        text = text.replace(password, "***")
    if url and "?" in url:  # the embedded server's URL carries its password as a parameter
        for pair in url.partition("?")[2].split("&"):
            value = pair.partition("=")[2]
            if value:
                text = text.replace(value, "***")
    return text


def database() -> str:
    """Which database, as an operator names it (no password)."""
    try:
        db = connections["default"].settings_dict
        vendor = connections["default"].vendor
    except Exception:  # a broken DATABASES: still say something
        return "the database"
    host = f" on {db.get('HOST')}:{db.get('PORT') or 'default port'}" if db.get("HOST") else ""
    return f"{vendor} database {str(db.get('NAME'))!r}{host}"


def failed(source: str, where: str, cause: BaseException | None, url: str | None = None) -> None:
    """A request found ``source`` ("store", "database") not answering: log the first."""
    with _lock:
        outage = _down.get(source)
        if outage is not None:
            outage.refused += 1
            return
        _down[source] = _Outage(time.monotonic(), where)
    logger.error(
        "%s unavailable: %s (%s); answering 503 until it answers again",
        source,
        where,
        describe(cause, url),
    )


def answered(source: str) -> None:
    """``source`` answered: log the end of its outage, if there was one."""
    if source not in _down:  # every store call passes here: no lock unless it matters
        return
    with _lock:
        outage = _down.pop(source, None)
    if outage is not None:
        logger.warning(
            "%s available again: %s, after %.1f s; %d request(s) answered 503 meanwhile",
            source,
            outage.where,
            time.monotonic() - outage.since,
            outage.refused,
        )


def is_down(source: str) -> bool:
    return source in _down


@receiver(connection_created)
def _database_connected(**kwargs: Any) -> None:
    """A new connection after a failure: the database answers again."""
    answered("database")

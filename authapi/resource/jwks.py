"""The auth service's public keys, fetched from its JWKS and kept.

* Fetched off the event loop (a worker thread: no HTTP client beyond the standard
  library is needed), one fetch at a time per process.
* Fresh for the answer's ``Cache-Control: max-age`` (else ``JWKS_MAX_AGE``); a stale set
  is refetched on the next check.
* A ``kid`` not in the set refetches at once, but at most once per
  ``JWKS_MIN_REFETCH_SECONDS``: forged kids cannot make a fetch storm. Failed fetches
  count too.
* While the auth service does not answer, the last good set keeps serving. With no set
  at all, a check is a 503 (``KeysUnavailable``), never a pass.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
import urllib.request
from collections.abc import Mapping
from typing import Any

import jwt

from authapi import conf
from authapi.errors import StoreUnavailable
from authapi.keys import Key

logger = logging.getLogger("authapi.resource")
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-store|no-cache)\s*(?:,|$)", re.IGNORECASE)
MAX_JWKS_BYTES = 256 * 1024


class KeysUnavailable(StoreUnavailable):
    detail = "The auth service's public keys could not be fetched. Try again shortly."


def max_age(cache_control: str | None, default: int) -> int:
    """Seconds a JWKS answer stays fresh, from its Cache-Control header."""
    if not cache_control:
        return default
    if _NO_CACHE.search(cache_control):
        return 0
    match = _MAX_AGE.search(cache_control)
    return int(match[1]) if match else default


def parse(document: Any) -> dict[str, Key]:
    """The usable signing keys of a JWK Set, by kid: asymmetric algorithms only (an
    ``alg`` we do not accept, or a key without ``kid``, is skipped)."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK Set")
    found: dict[str, Key] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, Mapping):
            continue
        kid, alg = jwk.get("kid"), jwk.get("alg")
        if not isinstance(kid, str) or alg not in conf.ASYMMETRIC_ALGORITHMS:
            continue
        if jwk.get("use", "sig") != "sig":
            continue
        try:
            public = jwt.PyJWK(dict(jwk), algorithm=alg).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            logger.warning("JWKS key %r is not usable; skipped", kid)
            continue
        found[kid] = Key(kid=kid, algorithm=str(alg), verifying=public)
    return found


class KeyCache:
    def __init__(self, url: str, *, min_refetch: int, default_max_age: int, timeout: float):
        self.url = url
        self.min_refetch = min_refetch
        self.default_max_age = default_max_age
        self.timeout = timeout
        self.keys: dict[str, Key] = {}
        self.fresh_until = 0.0  # monotonic
        self.last_attempt = float("-inf")  # monotonic, any fetch, good or failed
        self.fetches = 0  # attempts made (tests, metrics)
        self._lock = threading.Lock()

    def lookup(self, kid: str) -> Key | None:
        return self.keys.get(kid)

    async def ready(self, kid: str | None) -> None:
        """Make the set fresh enough to judge a token naming ``kid``; off the loop if a
        fetch is due. KeysUnavailable when there is no set at all."""
        if self._due(kid):
            await asyncio.to_thread(self._refresh, kid)
        if not self.keys:
            raise KeysUnavailable()

    def ready_sync(self, kid: str | None) -> None:
        if self._due(kid):
            self._refresh(kid)
        if not self.keys:
            raise KeysUnavailable()

    def _due(self, kid: str | None) -> bool:
        now = time.monotonic()
        if not self.keys or now >= self.fresh_until:
            return now - self.last_attempt >= self._retry_after_failure()
        if kid is not None and kid not in self.keys:
            return now - self.last_attempt >= self.min_refetch
        return False

    def _retry_after_failure(self) -> float:
        # Stale or empty: fetch now, unless one was just tried (the auth service is down,
        # and every request would otherwise wait on its timeout).
        return min(self.min_refetch, 5) if self.keys or self.fetches else 0

    def _refresh(self, kid: str | None) -> None:
        with self._lock:
            if not self._due(kid):
                return  # another thread fetched while this one waited
            self.last_attempt = time.monotonic()
            self.fetches += 1
            try:
                keys, seconds = self._fetch()
            except Exception as exc:  # network, HTTP status, JSON: keep the last good set
                logger.warning("could not fetch the JWKS at %s: %s", self.url, type(exc).__name__)
                return
            self.keys = keys
            self.fresh_until = time.monotonic() + seconds

    def _fetch(self) -> tuple[dict[str, Key], int]:
        request = urllib.request.Request(self.url, headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310
            body = answer.read(MAX_JWKS_BYTES + 1)
            cache_control = answer.headers.get("Cache-Control")
        if len(body) > MAX_JWKS_BYTES:
            raise ValueError("JWKS too large")
        return parse(json.loads(body)), max_age(cache_control, self.default_max_age)

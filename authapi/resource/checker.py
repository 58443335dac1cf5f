"""``verify(token)``: the whole check of an access token at a resource server.

1. Signature, by a key of the auth service's JWKS (:mod:`.jwks`), or its HMAC secret
   (``SIGNING_KEY``, for deployments whose JWKS is a 404).
2. The claims, by :func:`authapi.tokens.verify`, the very function the auth service
   runs: ``typ`` (``at+jwt``; RFC 9068), token type ``access``, ``iss`` and ``aud`` when
   configured, ``exp``/``nbf``/``iat`` with ``LEEWAY``, well-formed ``jti``/``sid``/``sub``.
   A token bound to a key (``cnf``, DPoP) is refused: the kit checks no proofs.
3. Revocation, as the auth service decides it:
   * ``REDIS_URL``: one HMGET on the auth service's store, the key and the verdict from
     :mod:`authapi.keyspace`, shared with its own access check. A token is refused from
     the moment the revoking response is sent. The auth service being down does not
     matter; the store being down is a 503 (``StoreUnavailable``), never a pass.
   * ``INTROSPECTION_URL``: one POST per check (RFC 7662), or, with
     ``INTROSPECTION_CACHE_SECONDS = N``, an ``active`` answer reused for at most N
     seconds (a revocation is then seen at most N seconds late). No answer: 503.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus, urlencode

from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from authapi import keys, keyspace, redis_url, tokens
from authapi.errors import StoreUnavailable, TokenInvalid
from authapi.resource import settings as resource_settings
from authapi.resource.jwks import KeyCache

_RETRY = Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.2), 2, (RedisConnectionError,))
_CACHE_MAX = 100_000


class ResourceContext:
    """``request.auth``: the verified access token. ``claims`` is its payload."""

    __slots__ = ("token",)

    def __init__(self, token: tokens.Claims) -> None:
        self.token = token

    @property
    def user_id(self) -> int | str:
        return self.token.user_id

    @property
    def sid(self) -> str:
        return self.token.sid

    @property
    def jti(self) -> str:
        return self.token.jti

    @property
    def claims(self) -> dict[str, Any]:
        return self.token.payload

    def __getitem__(self, name: str) -> Any:  # request.auth["user_id"], as simplejwt's token
        return self.token.payload[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.token.payload.get(name, default)


class Checker:
    def __init__(self, cfg: resource_settings.ResourceSettings) -> None:
        self.cfg = cfg
        self.keys: KeyCache | None = None
        self._static: dict[str, keys.Key] = {}
        if cfg.jwks_url:
            self.keys = KeyCache(
                cfg.jwks_url,
                min_refetch=cfg.jwks_min_refetch,
                default_max_age=cfg.jwks_max_age,
                timeout=cfg.timeout,
            )
        else:
            assert cfg.signing_key is not None
            # The auth service's own derivation, so the kid matches its tokens'.
            key = keys._hmac_secret(
                cfg.algorithm, cfg.signing_key, "AUTHAPI_RESOURCE['SIGNING_KEY']"
            )
            self._static = {key.kid: key}
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._introspected: dict[str, tuple[bool, float]] = {}

    # --- the check ------------------------------------------------------------------------

    async def verify(self, token: Any) -> ResourceContext:
        claims = await self.claims(token)
        if self.cfg.redis_url:
            alive = await self._store_says(claims)
        else:
            alive = await self._introspection_says(token, claims)
        if not alive:
            raise TokenInvalid("Token has been revoked")
        return ResourceContext(claims)

    async def claims(self, token: Any) -> tokens.Claims:
        """Signature and claims, no revocation: what the token itself proves."""
        kid = tokens.unverified_kid(token)  # TokenInvalid for anything not a JWS
        lookup: Callable[[str], keys.Key | None] = self._static.get
        if self.keys is not None:
            await self.keys.ready(kid)
            lookup = self.keys.lookup
        cfg = self.cfg
        claims = tokens.verify(
            token, "access", lookup, issuer=cfg.issuer, audience=cfg.audience, leeway=cfg.leeway
        )
        if "cnf" in claims.payload:
            # Bound to a key (DPoP, RFC 9449): only valid with a proof, which the kit does
            # not check. Refused rather than accepted as a plain Bearer token.
            raise TokenInvalid("Token is bound to a key (DPoP); send it where proofs are checked")
        return claims

    # --- revocation: the store ---------------------------------------------------------------

    def _client(self) -> Any:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            assert self.cfg.redis_url is not None
            client = redis_url.connect(
                self.cfg.redis_url,
                decode_responses=True,
                socket_connect_timeout=self.cfg.timeout,
                socket_timeout=self.cfg.timeout,
                health_check_interval=30,
                retry=_RETRY,
            )
            self._clients[loop] = client
        return client

    async def _store_says(self, claims: tokens.Claims) -> bool:
        key = keyspace.session_key(claims.user_id, claims.sid)
        try:
            uid, revoked = await self._client().hmget(key, keyspace.access_fields(claims.jti))
        except (RedisError, OSError) as exc:
            raise StoreUnavailable() from exc
        return keyspace.access_verdict(claims.user_id, uid, revoked)

    async def aclose(self) -> None:
        """Close this loop's store client."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def close_elsewhere(self) -> None:
        """Close the clients of every loop, each on its own loop (new settings)."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, client in list(self._clients.items()):
            if loop.is_closed():
                continue
            if loop is running:
                _closing.add(task := loop.create_task(client.aclose()))
                task.add_done_callback(_closing.discard)
            else:
                future = asyncio.run_coroutine_threadsafe(client.aclose(), loop)
                _closing.add(future)
                future.add_done_callback(_closing.discard)
        self._clients.clear()

    # --- revocation: introspection -------------------------------------------------------------

    async def _introspection_says(self, token: str, claims: tokens.Claims) -> bool:
        now = time.monotonic()
        seen = self._introspected.get(claims.jti)
        if seen is not None and now < seen[1]:
            return seen[0]
        active = await asyncio.to_thread(self._introspect, token, claims.jti)
        cache = self.cfg.introspection_cache
        left = claims.exp - tokens.now()  # never beyond the token's own life
        until = now + (min(cache, left) if active else left)
        if (cache or not active) and until > now:
            if len(self._introspected) >= _CACHE_MAX:
                self._introspected.clear()
            self._introspected[claims.jti] = (active, until)
        return active

    def _introspect(self, token: str, jti: str) -> bool:
        cfg = self.cfg
        assert cfg.introspection_url and cfg.client_id and cfg.client_secret
        pair = f"{quote_plus(cfg.client_id)}:{quote_plus(cfg.client_secret)}"
        request = urllib.request.Request(
            cfg.introspection_url,
            data=urlencode({"token": token, "token_type_hint": "access_token"}).encode(),
            headers={
                "Authorization": "Basic " + base64.b64encode(pair.encode()).decode(),
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=cfg.timeout) as answer:  # noqa: S310
                body = json.loads(answer.read(64 * 1024))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise StoreUnavailable("The auth service's introspection did not answer.") from exc
        if not isinstance(body, dict) or not isinstance(body.get("active"), bool):
            raise StoreUnavailable("The auth service's introspection answered nonsense.")
        return body["active"] is True and body.get("jti") in (None, jti)


_checker: Checker | None = None
_closing: set[Any] = set()


def checker() -> Checker:
    global _checker
    if _checker is None:
        _checker = Checker(resource_settings.get())
    return _checker


def reset() -> None:
    """Forget the checker (new settings): keys and clients are made again."""
    global _checker
    old, _checker = _checker, None
    if old is not None:
        old.close_elsewhere()


async def aclose() -> None:
    """Close this loop's store client (scripts and tests that own their loop)."""
    if _checker is not None:
        await _checker.aclose()


async def verify(token: Any) -> ResourceContext:
    """Verify an access token and that it is not revoked; TokenInvalid (401) or
    StoreUnavailable (503) otherwise."""
    return await checker().verify(token)

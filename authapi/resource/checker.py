"""``verify(token)``: the whole check of an access token at a resource server.

1. Signature, by a key of the auth service's JWKS (:mod:`.jwks`), or its HMAC secret
   (``SIGNING_KEY``, for deployments whose JWKS is a 404).
2. The claims, by :func:`authapi.tokens.verify`, the very function the auth service
   runs: ``typ`` (``at+jwt``; RFC 9068), token type ``access``, ``iss`` and ``aud`` when
   configured, ``exp``/``nbf``/``iat`` with ``LEEWAY``, well-formed ``jti``/``sid``/``sub``.
   A token bound to a key (``cnf.jkt``, DPoP, RFC 9449) is accepted only as
   ``Authorization: DPoP`` with a proof by that key for this request (:mod:`authapi.dpop`,
   the auth service's own check); the proof's ``jti`` is claimed in the store in the same
   round trip as the revocation read (with introspection: in this process only).
3. Revocation, as the auth service decides it:
   * ``REDIS_URL``: one HMGET on the auth service's store, the key and the verdict from
     :mod:`authapi.keyspace`, shared with its own access check. A token is refused from
     the moment the revoking response is sent. The auth service being down does not
     matter; the store being down is a 503 (``StoreUnavailable``), never a pass.
   * ``INTROSPECTION_URL``: one POST per check (RFC 7662), or, with
     ``INTROSPECTION_CACHE_SECONDS = N``, an ``active`` answer reused for at most N
     seconds and never past the token's ``exp`` (a revocation is then seen at most N
     seconds late; at once when any token of its session was reported inactive here;
     :mod:`.introspection`). No answer: 503. Without ``JWKS_URL``/``SIGNING_KEY`` the
     answer is the whole verdict: steps 1 and 2 are the auth service's, and the claims
     (``request.auth.claims``) are those it returns, checked for kind, ``iss``, ``aud``
     and ``exp`` here as well.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus, urlencode

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from authapi import dpop, keys, keyspace, redis_url, tokens
from authapi.errors import DPoPInvalid, StoreUnavailable, TokenInvalid
from authapi.resource import introspection
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
        elif cfg.signing_key is not None:
            # The auth service's own derivation, so the kid matches its tokens'.
            key = keys._hmac_secret(
                cfg.algorithm, cfg.signing_key, "AUTHAPI_RESOURCE['SIGNING_KEY']"
            )
            self._static = {key.kid: key}
        self.local = bool(cfg.jwks_url or cfg.signing_key)  # else introspection alone
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._answers = introspection.Answers(_CACHE_MAX)
        self._seen: dict[str, float] = {}  # DPoP jtis, introspection mode only

    # --- the check ------------------------------------------------------------------------

    async def verify(
        self, token: Any, *, request: HttpRequest | None = None, dpop_scheme: bool = False
    ) -> ResourceContext:
        if self.local:
            claims = await self.claims(token)
        else:  # no key material: the auth service's answer is the verdict and the claims
            claims = await self._introspected_claims(token)
        proof = None
        if claims.jkt is not None:
            proof = self._proof(token, claims, request if dpop_scheme else None)
        elif dpop_scheme:
            raise TokenInvalid("This access token is not DPoP-bound: send it as Bearer")
        if self.cfg.redis_url:
            alive, fresh = await self._store_says(claims, proof)
        else:
            alive = self.local is False or await self._introspection_says(token, claims)
            fresh = proof is None or self._first_here(proof)
        if not alive:
            raise TokenInvalid("Token has been revoked")
        if not fresh:
            raise DPoPInvalid("The DPoP proof was used before (its jti is spent)")
        return ResourceContext(claims)

    def _proof(self, token: str, claims: tokens.Claims, request: HttpRequest | None) -> dpop.Proof:
        if request is None:
            refused = DPoPInvalid(
                "This token is DPoP-bound: send it as 'Authorization: DPoP' with a proof"
            )
            refused.extra_headers["WWW-Authenticate"] = (
                f'DPoP error="invalid_token", algs="{" ".join(dpop.ALGORITHMS)}"'
            )
            raise refused
        value = dpop.proof_header(request)
        if value is None:
            raise DPoPInvalid("This request needs a DPoP proof (the DPoP header)")
        proof = dpop.verify(
            value,
            method=request.method or "",
            uri=dpop.request_uri(request),
            access_token=token,
            leeway=self.cfg.leeway,
        )
        if proof.jkt != claims.jkt:
            raise DPoPInvalid("The DPoP proof is signed by another key than the token is bound to")
        return proof

    def _first_here(self, proof: dpop.Proof) -> bool:
        """Introspection mode has no store to claim a jti in: this process remembers."""
        now = time.monotonic()
        key = f"{proof.jkt}:{proof.jti}"
        if self._seen.get(key, 0.0) > now:
            return False
        if len(self._seen) >= _CACHE_MAX:
            self._seen = {k: t for k, t in self._seen.items() if t > now}
            if len(self._seen) >= _CACHE_MAX:
                self._seen.clear()
        self._seen[key] = now + dpop.proof_ttl_ms() / 1000
        return True

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
        if "cnf" in claims.payload and claims.jkt is None:
            raise TokenInvalid("Token is bound to a key this service cannot check")
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

    async def _store_says(
        self, claims: tokens.Claims, proof: dpop.Proof | None
    ) -> tuple[bool, bool]:
        """(not revoked, the proof's jti never seen before) in one round trip."""
        key = keyspace.session_key(claims.user_id, claims.sid)
        fields = keyspace.access_fields(claims.jti)
        try:
            if proof is None:
                uid, revoked = await self._client().hmget(key, fields)
                fresh = True
            else:
                # One hash tag: one node, one round trip, as the auth service's own check.
                claim = keyspace.dpop_jti_key(claims.user_id, proof.jkt, proof.jti)
                pipe = self._client().pipeline(transaction=False)
                pipe.hmget(key, fields)
                pipe.set(claim, "1", nx=True, px=dpop.proof_ttl_ms())
                (uid, revoked), claimed = await pipe.execute()
                fresh = bool(claimed)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable() from exc
        return keyspace.access_verdict(claims.user_id, uid, revoked), fresh

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
        """Locally verified already: is it still live? (cached as :mod:`.introspection`)"""
        body = await self._answer(token, claims.exp)
        return body is not None and body.get("jti") in (None, claims.jti)

    async def _introspected_claims(self, token: Any) -> tokens.Claims:
        """Introspection alone: the live access token's claims as the auth service gives
        them, checked against ``ISSUER``/``AUDIENCE`` here too."""
        tokens.unverified_header(token)  # not even a JWS: no call to the auth service
        body = await self._answer(token, None)
        if body is None:
            raise TokenInvalid("Token has been revoked or is not valid")
        cfg = self.cfg
        claims = introspection.claims_of(body, issuer=cfg.issuer, audience=cfg.audience)
        if claims.exp + cfg.leeway <= tokens.now():
            raise TokenInvalid("Token is invalid or expired")
        return claims

    async def _answer(self, token: str, exp: int | None) -> dict[str, Any] | None:
        """The auth service's live answer for ``token`` (None: not active), reused for at
        most ``INTROSPECTION_CACHE_SECONDS``, never past the token's ``exp`` nor past an
        inactive answer for any token of its session."""
        cached = self._answers.get(token)
        if cached is not None:
            return cached.body
        body = await asyncio.to_thread(self._introspect, token)
        self._answers.put(token, body, cache=self.cfg.introspection_cache, exp=exp)
        return body

    def _introspect(self, token: str) -> dict[str, Any] | None:
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
        return body if body["active"] is True else None


_checker: Checker | None = None
_misconfigured: list[str] = []
logger = logging.getLogger("authapi.resource")
_closing: set[Any] = set()


def checker() -> Checker:
    global _checker
    if _checker is None:
        try:
            _checker = Checker(resource_settings.get())
        except ImproperlyConfigured as exc:
            # Fail closed, and say why once per process ("authapi.resource" in
            # INSTALLED_APPS refuses to start instead).
            if not _misconfigured:
                _misconfigured.append(str(exc))
                logger.error("authapi.resource is misconfigured: %s", exc)
            raise StoreUnavailable(
                "This service cannot check tokens: its AUTHAPI_RESOURCE setting is "
                "misconfigured (its log names the fault)."
            ) from None
    return _checker


def reset() -> None:
    """Forget the checker (new settings): keys and clients are made again."""
    global _checker
    old, _checker = _checker, None
    _misconfigured.clear()
    if old is not None:
        old.close_elsewhere()


async def aclose() -> None:
    """Close this loop's store client (scripts and tests that own their loop)."""
    if _checker is not None:
        await _checker.aclose()


async def verify(
    token: Any, *, request: HttpRequest | None = None, dpop_scheme: bool = False
) -> ResourceContext:
    """Verify an access token and that it is not revoked; TokenInvalid (401) or
    StoreUnavailable (503) otherwise. A DPoP-bound token needs ``dpop_scheme`` (it came as
    ``Authorization: DPoP``) and the ``request`` whose ``DPoP`` proof is checked."""
    return await checker().verify(token, request=request, dpop_scheme=dpop_scheme)

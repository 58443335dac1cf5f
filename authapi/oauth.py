"""What resource servers call: metadata (RFC 8414), introspection (RFC 7662) and
revocation (RFC 7009). ``api.py`` mounts :data:`router` at the site root.

* ``GET /.well-known/oauth-authorization-server``: the issuer and the absolute URLs of the
  JWKS, introspection and revocation, with the auth methods of each; cacheable.
* ``POST /api/auth/introspect``: for the clients of ``AUTHAPI_RESOURCE_CLIENTS`` (HTTP
  Basic, RFC 6749 2.3.1), 404 while there are none. A live token is described; any other
  token is exactly ``{"active": false}``. One store command per call, the one the access
  check (or ``/verify``, for a refresh token) makes, so both always agree.
* ``POST /api/auth/revoke``: no client auth needed (public clients), but wrong Basic
  credentials are a 401. A refresh token ends its whole session, as logout does; an
  access token is refused from then on, as logout's Bearer token is (its ``jti`` only: the
  session and its refresh token live on). Whatever the token, 200 ``{}``; a DPoP-bound
  token without a proof by its key, or a spent bound refresh token, revokes nothing.

A failed client authentication counts on the login throttle's per-address allowance (an
attempt named after the client id, which no username can be), and is answered 429 once
that is used up.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from ninja import Router, Schema
from pydantic import Field, StrictStr

from authapi import conf, dpop, origin, possession, schemas, sessions, store, tokens
from authapi.client import client_ip
from authapi.errors import (
    AuthApiError,
    DPoPGrantNonce,
    DPoPInvalid,
    DPoPNonceNeeded,
    InvalidHost,
    NotFound,
    Throttled,
    TokenInvalid,
)
from authapi.schemas import Error
from authapi.throttle import network

router = Router(tags=["resource servers"])

INACTIVE: dict[str, Any] = {"active": False}
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class InvalidRequest(AuthApiError):
    """RFC 6749 5.2's ``invalid_request``, in our shape (and OAuth's ``error`` key)."""

    code = "invalid_request"
    detail = "The request needs a 'token' field (text)."

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, extra={"error": self.code})


class InvalidClient(AuthApiError):
    """RFC 6749 5.2's ``invalid_client``: a 401 with a Basic challenge."""

    status = 401
    code = "invalid_client"
    detail = "Client authentication failed: send HTTP Basic credentials of a resource client."
    headers = {"WWW-Authenticate": 'Basic realm="authapi", charset="UTF-8"'}

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, extra={"error": self.code})


class ClientThrottled(Throttled):
    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.message = f"Too many failed client authentications. Try again in {retry_after} s."


class TokenIn(Schema):
    token: StrictStr = Field(min_length=1, description="The token to describe or revoke.")
    token_type_hint: StrictStr | None = Field(
        None,
        max_length=64,
        description='"access_token" or "refresh_token"; optional: the token says what it is.',
    )


class Introspection(Schema):
    active: bool
    sub: str | None = None
    user_id: int | str | None = None
    sid: str | None = None
    jti: str | None = None
    exp: int | None = None
    iat: int | None = None
    token_type: str | None = Field(
        None, description='How the token is used (RFC 7662 2.2): "Bearer", or "DPoP" when bound.'
    )
    authapi_token_kind: str | None = Field(None, description='"access" or "refresh".')
    iss: str | None = None
    aud: str | list[str] | None = None
    cnf: dict[str, Any] | None = None


class Metadata(Schema):
    issuer: str
    jwks_uri: str
    introspection_endpoint: str
    introspection_endpoint_auth_methods_supported: list[str]
    revocation_endpoint: str
    revocation_endpoint_auth_methods_supported: list[str]
    response_types_supported: list[str]
    access_token_signing_alg_values_supported: list[str]
    dpop_signing_alg_values_supported: list[str] | None = None
    service_documentation: str


def _token_in(request: HttpRequest) -> TokenIn:
    """The body's ``token`` (+ hint), JSON or form; 400 ``invalid_request`` without it."""
    try:
        return schemas.parse(request, TokenIn)
    except AuthApiError as exc:
        if exc.status == 422:
            raise InvalidRequest() from None
        raise  # 400 malformed body, 413, unsupported Content-Type: as every endpoint


# --- client authentication (RFC 6749 2.3.1) -------------------------------------------


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def basic_credentials(request: HttpRequest) -> tuple[str, str] | None:
    """The ``(client_id, secret)`` of an ``Authorization: Basic`` header, each form-decoded
    as RFC 6749 2.3.1 says; None without such a header; InvalidClient if it is garbled."""
    value = request.headers.get("Authorization")
    if not value:
        return None
    scheme, _, encoded = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        text = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise InvalidClient("Malformed HTTP Basic credentials.") from None
    client_id, colon, secret = text.partition(":")
    if not colon:
        raise InvalidClient("Malformed HTTP Basic credentials.")
    return unquote_plus(client_id), unquote_plus(secret)


def match_client(client_id: str, secret: str) -> str | None:
    """The configured client these credentials name, or None. Every configured client is
    compared, id and secret, by digest in constant time: no early exit tells an attacker
    which id exists or how much of a secret was right."""
    sent_id, sent_secret = _digest(client_id), _digest(secret)
    found: str | None = None
    for known_id, known_secret in conf.get().resource_clients:
        same_id = hmac.compare_digest(sent_id, _digest(known_id))
        same_secret = hmac.compare_digest(sent_secret, _digest(known_secret))
        if same_id & same_secret:
            found = known_id
    return found


# Addresses this process saw use up their allowance, until when (monotonic): a right
# secret from one of them is refused too, so a 200 does not tell a guess from a failure.
_throttled: dict[str, float] = {}
_THROTTLED_MAX = 10_000


async def _failed(request: HttpRequest, client_id: str) -> InvalidClient | ClientThrottled:
    """Count one failed client authentication; the error to answer with."""
    cfg = conf.get()
    if cfg.login_rate is None and cfg.login_rate_per_ip is None:
        return InvalidClient()
    ip = network(client_ip(request), cfg.ipv6_prefix)
    # "\0" is in no username (the login schema refuses it): never a user's counter. By
    # network, as logins are (an IPv6 client owns its whole /64); no per-account limit.
    attempt = store.attempt_keys(ip, f"\0resource-client:{client_id}")
    wait, _ = await store.reserve_attempt(attempt, cfg.login_rate, cfg.login_rate_per_ip)
    if not wait:
        return InvalidClient()
    if len(_throttled) >= _THROTTLED_MAX:
        _throttled.clear()
    _throttled[ip] = time.monotonic() + wait
    return ClientThrottled(wait)


def _still_throttled(request: HttpRequest) -> int:
    ip = network(client_ip(request), conf.get().ipv6_prefix)
    until = _throttled.get(ip)
    if until is None:
        return 0
    left = until - time.monotonic()
    if left <= 0:
        _throttled.pop(ip, None)
        return 0
    return int(left) + 1


async def authenticate_client(request: HttpRequest, *, required: bool) -> str | None:
    """The resource client the request authenticates as; None if it sent no credentials
    and none are ``required``. Wrong credentials: 401 (429 once throttled)."""
    try:
        credentials = basic_credentials(request)
    except InvalidClient as exc:
        raise await _failed(request, "") from exc
    if credentials is None:
        if required:
            raise InvalidClient()
        return None
    client = match_client(*credentials)
    if client is None:
        raise await _failed(request, credentials[0][:200])
    wait = _still_throttled(request)
    if wait:
        raise ClientThrottled(wait)
    return client


def _answer(body: dict[str, Any], status: int = 200) -> JsonResponse:
    response = JsonResponse(body, status=status)
    for name, value in _NO_STORE.items():
        response[name] = value
    return response


def _error(exc: AuthApiError) -> HttpResponse:
    response = exc.response()
    for name, value in _NO_STORE.items():
        response[name] = value
    return response


# --- introspection ----------------------------------------------------------------------


def describe(claims: tokens.Claims) -> dict[str, Any]:
    """RFC 7662's answer for a live token: its ``token_type`` is the scheme it is used
    under (RFC 7662 §2.2, RFC 9449 §6), ``DPoP`` for a bound one; whether it is an access
    or a refresh token is ``authapi_token_kind``."""
    payload = claims.payload
    body: dict[str, Any] = {
        "active": True,
        "sub": str(claims.user_id),
        "user_id": claims.user_id,
        "sid": claims.sid,
        "jti": claims.jti,
        "exp": claims.exp,
        "iat": claims.iat,
        "token_type": "DPoP" if claims.jkt is not None else "Bearer",
        "authapi_token_kind": claims.token_type,
    }
    for name in ("iss", "aud", "cnf", "amr"):  # amr: how the user authenticated (RFC 8176)
        if name in payload:
            body[name] = payload[name]
    return body


async def introspect_token(token: str) -> dict[str, Any]:
    """Describe a live token, or ``{"active": false}``: one store command, the very one
    the access check (refresh: ``/verify``) makes. StoreUnavailable goes up (503)."""
    try:
        claims = tokens.decode(token, ("access", "refresh"))
    except TokenInvalid:
        return dict(INACTIVE)
    if claims.token_type == "access":
        alive = await store.access_allowed(claims.user_id, claims.sid, claims.jti)
    else:
        alive = await store.refresh_is_current(claims.user_id, claims.sid, claims.jti)
    return describe(claims) if alive else dict(INACTIVE)


@router.post(
    "/api/auth/introspect",
    url_name="oauth_introspect",
    response={
        200: Introspection,
        400: Error,
        401: Error,
        404: Error,
        413: Error,
        429: Error,
        503: Error,
    },  # fmt: skip
    exclude_none=True,
    openapi_extra=schemas.body_doc(TokenIn),
    summary="RFC 7662 token introspection, for the resource clients (HTTP Basic)",
)
async def introspect(request: HttpRequest) -> HttpResponse:
    if not conf.get().resource_clients:
        return _error(NotFound("Introspection is off: AUTHAPI_RESOURCE_CLIENTS is not set."))
    try:
        await authenticate_client(request, required=True)
        body = _token_in(request)
        return _answer(await introspect_token(body.token))
    except AuthApiError as exc:
        return _error(exc)


# --- revocation -------------------------------------------------------------------------


async def revoke_token(request: HttpRequest, token: str) -> None:
    """End what ``token`` grants; nothing for a token that is not ours or no longer valid,
    nor for a bound one without a proof by its key, nor for a spent bound refresh token
    (reuse is detected at /refresh, where the proof is needed too)."""
    try:
        claims = tokens.decode(token, ("access", "refresh"))
    except TokenInvalid:
        return  # RFC 7009 2.2: an invalid token is no error
    access = claims.token_type == "access"
    try:
        await possession.prove(request, claims, access_token=token if access else None)
    except DPoPNonceNeeded as exc:  # the client can retry: say so (RFC 9449 §8)
        raise DPoPGrantNonce(exc.extra_headers["DPoP-Nonce"]) from None
    except DPoPInvalid:
        return  # a copy without the key revokes nothing: 200, as for any invalid token
    if access:
        # As logout does with the Bearer token sent along: this token, not its session.
        await store.revoke_access(claims.user_id, claims.sid, claims.jti)
        return
    if claims.jkt is not None and not await store.refresh_is_current(
        claims.user_id, claims.sid, claims.jti
    ):
        return
    await sessions.end_session(request, claims, "logout")  # False: already ended


@router.post(
    "/api/auth/revoke",
    url_name="oauth_revoke",
    response={200: dict[str, Any], 400: Error, 401: Error, 413: Error, 429: Error, 503: Error},
    openapi_extra=schemas.body_doc(TokenIn),
    summary="RFC 7009 revocation: a refresh token ends its session, an access token itself",
)
async def revoke(request: HttpRequest) -> HttpResponse:
    try:
        await authenticate_client(request, required=False)
        body = _token_in(request)
        await revoke_token(request, body.token)
    except AuthApiError as exc:
        return _error(exc)
    return _answer({})


# --- metadata ---------------------------------------------------------------------------


def metadata(request: HttpRequest) -> tuple[dict[str, Any], bool]:
    """The RFC 8414 document, and whether it depends on the request's Host."""
    cfg = conf.get()
    base, by_host = origin.of(request, cfg.issuer)
    answer: dict[str, Any] = {
        "issuer": cfg.issuer or base,
        "jwks_uri": base + reverse("authapi:jwks"),
        "introspection_endpoint": base + reverse("authapi:oauth_introspect"),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
        "revocation_endpoint": base + reverse("authapi:oauth_revoke"),
        # public clients: none needed (Basic credentials, if sent, must be right)
        "revocation_endpoint_auth_methods_supported": ["none"],
        "response_types_supported": [],  # REQUIRED by RFC 8414; we run no OAuth flow
        "access_token_signing_alg_values_supported": [cfg.algorithm],
        "service_documentation": base + reverse("authapi:openapi-view"),
    }
    if cfg.dpop != "off":  # RFC 9449 §5.1: proofs of these algorithms are accepted
        answer["dpop_signing_alg_values_supported"] = list(dpop.ALGORITHMS)
    return answer, by_host


@router.get(
    "/.well-known/oauth-authorization-server",
    url_name="oauth_metadata",
    response={200: Metadata},
    summary="RFC 8414 metadata: issuer, JWKS, introspection and revocation endpoints",
)
async def server_metadata(request: HttpRequest) -> HttpResponse:
    try:
        answer, by_host = metadata(request)
    except InvalidHost as exc:
        return exc.response()
    response = JsonResponse(answer)
    response["Cache-Control"] = f"public, max-age={conf.get().jwks_max_age}"
    if by_host:  # a shared cache keeps one answer per Host
        patch_vary_headers(response, ("Host",))
    return response


async def metadata_at_path(request: HttpRequest, suffix: str) -> HttpResponse:
    """RFC 8414 3.1: for an issuer with a path (``https://host/tenant``), the metadata is
    also at ``/.well-known/oauth-authorization-server/tenant``; any other path is a 404."""
    issuer = conf.get().issuer
    path = urlsplit(issuer).path.strip("/") if issuer else ""
    if request.method not in {"GET", "HEAD"} or not path or suffix.strip("/") != path:
        return NotFound().response()
    return await server_metadata(request)

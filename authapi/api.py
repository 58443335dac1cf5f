"""The HTTP surface: ``NinjaAPI`` with the auth routes, simplejwt aliases and error handlers."""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from ninja import NinjaAPI, Router
from ninja.decorators import decorate_view
from ninja.errors import AuthenticationError, HttpError, ValidationError

from authapi import cookies, dpop, schemas, sessions, store, tokens, views
from authapi.auth import (
    AccessContext,
    JWTBearer,
    credentials,
    jwt_bearer,
    scheme_hint,
)
from authapi.errors import (
    AuthApiError,
    CsrfFailed,
    DatabaseUnavailable,
    DPoPInvalid,
    InvalidBody,
    MethodNotAllowed,
    NotAuthenticated,
    NotFound,
    TokenInvalid,
    UnsupportedMediaType,
)
from authapi.schemas import (
    Empty,
    Error,
    Health,
    Jwks,
    LoginIn,
    Me,
    RefreshIn,
    SessionOut,
    TokenPair,
    VerifyIn,
)

logger = logging.getLogger("authapi")

api = NinjaAPI(
    title="authapi",
    version="1.0.0",
    description="JWT login, rotating refresh tokens and revocation, on Redis.",
    urls_namespace="authapi",
    # Mounted at the site root (authapi.urls), so /health and the JWKS are in the document.
    docs_url="/api/docs",
    docs=views.SwaggerUI(),  # serves its own assets: no /static/ needed under uvicorn
    openapi_url="/api/openapi.json",
)

ERRORS: dict[int, Any] = {400: Error, 413: Error, 415: Error, 422: Error, 503: Error}
AUTH_ERRORS: dict[int, Any] = {401: Error, 403: Error, 503: Error}
jwt_profile = JWTBearer(profile=True)  # /me: the user's public fields in the same command
_SID = re.compile(r"[A-Za-z0-9_-]{16,64}")  # fullmatch, never "$": it allows a final "\n"


def _no_content() -> HttpResponse:
    return HttpResponse(status=204)


Run = Callable[..., Awaitable[HttpResponseBase]]


def _never_cached(run: Run) -> Run:
    """Mark every answer of the operation, errors included, never to be stored (RFC 6749 5.1)."""

    @functools.wraps(run)
    async def wrapper(request: HttpRequest, **kwargs: Any) -> HttpResponseBase:
        response = await run(request, **kwargs)
        response["Cache-Control"] = "no-store"
        response["Pragma"] = "no-cache"
        return response

    return wrapper


# Under the route decorator, so that the simplejwt aliases of the view get it too.
no_store = decorate_view(_never_cached)


# --- error handlers: every error is {"detail", "code"} -------------------------------


def _our_error(request: HttpRequest, exc: AuthApiError) -> HttpResponse:
    return exc.response()


def _not_authenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return NotAuthenticated(scheme_hint(request)).response()  # "JWT <t>": say Bearer


def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors = [
        {"field": ".".join(str(p) for p in e.get("loc", ())), "message": str(e.get("msg", ""))}
        for e in exc.errors
    ]
    return InvalidBody(extra={"errors": errors}).response()


def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return NotFound().response()


def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    code = {405: MethodNotAllowed.code, 404: NotFound.code}.get(exc.status_code, "error")
    return JsonResponse({"detail": str(exc), "code": code}, status=exc.status_code)


def _database(request: HttpRequest, exc: DatabaseError) -> HttpResponse:
    error = DatabaseUnavailable()
    error.__cause__ = exc  # logged once per outage (authapi.outages)
    return error.response()


def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("unhandled error in %s %s", request.method, request.path)
    return JsonResponse({"detail": "Internal server error.", "code": "server_error"}, status=500)


def install_error_handlers(target: NinjaAPI) -> NinjaAPI:
    """Render every error of ``target`` as ``{"detail", "code"}``: call it on your own
    ``NinjaAPI`` that uses ``jwt_bearer`` so a bad token is a 401, a Redis outage a 503."""
    handlers: list[tuple[type[Exception], Any]] = [
        (AuthApiError, _our_error),
        (AuthenticationError, _not_authenticated),
        (ValidationError, _invalid),
        (Http404, _not_found),
        (HttpError, _http_error),
        (DatabaseError, _database),
        (Exception, _unexpected),
    ]
    for exc_class, handler in handlers:
        target.add_exception_handler(exc_class, handler)
    return target


install_error_handlers(api)

# --- /api/auth/ -----------------------------------------------------------------------

auth = Router(tags=["auth"])


def _pair_body(
    request: HttpRequest, response: HttpResponse, pair: dict[str, Any]
) -> dict[str, Any]:
    """The pair for the body, less the refresh token when a cookie now carries it."""
    if cookies.set_pair(request, response, pair):
        return {name: value for name, value in pair.items() if name != "refresh"}
    return pair


@auth.post(
    "/login",
    response={200: TokenPair, 401: Error, 429: Error, **ERRORS},
    exclude_none=True,
    openapi_extra=schemas.body_doc(LoginIn),
    summary="Log in with username and password",
)
@no_store
async def login(request: HttpRequest, response: HttpResponse) -> dict[str, Any]:
    body = schemas.parse(request, LoginIn)
    proof = dpop.for_login(request)  # before the password hash: a bad proof costs nothing
    pair = await sessions.login(request, body.username, body.password, proof)
    return _pair_body(request, response, pair)


@auth.post(
    "/refresh",
    response={200: TokenPair, 401: Error, 403: Error, **ERRORS},
    exclude_none=True,
    openapi_extra=schemas.body_doc(RefreshIn),
    summary="Spend a refresh token for the session's next pair",
)
@no_store
async def refresh(request: HttpRequest, response: HttpResponse) -> dict[str, Any]:
    token = cookies.refresh_token(request) or schemas.parse(request, RefreshIn).refresh
    pair = await sessions.refresh(request, token)
    return _pair_body(request, response, pair)


@auth.post(
    "/logout",
    response={204: None, 401: Error, 403: Error, **ERRORS},
    openapi_extra=schemas.body_doc(RefreshIn),
    summary="Revoke the refresh token's session (and the Bearer access token, if sent)",
)
async def logout(request: HttpRequest) -> HttpResponse:
    refresh_token = cookies.refresh_token(request) or schemas.parse(request, RefreshIn).refresh
    found = credentials(request)
    access: str | None
    if found is not None and found[0] in ("bearer", "dpop"):
        access, dpop_scheme = found[1], found[0] == "dpop"
    else:
        access, dpop_scheme = _optional_access_cookie(request), False
    await sessions.logout(request, refresh_token, access, dpop_scheme=dpop_scheme)
    response = _no_content()
    cookies.clear(response)
    return response


def _optional_access_cookie(request: HttpRequest) -> str | None:
    """The access cookie to revoke along, when it passes CSRF; never a reason to refuse."""
    try:
        return cookies.access_token(request)
    except CsrfFailed:
        return None


@auth.post(
    "/verify",
    response={200: Empty, 401: Error, **ERRORS},
    openapi_extra=schemas.body_doc(VerifyIn),
    summary="Check that a token (access or refresh) is valid and not revoked",
)
async def verify(request: HttpRequest) -> dict[str, Any]:
    body = schemas.parse(request, VerifyIn)
    await sessions.verify(request, body.token)
    return {}


@auth.post(
    "/logout-all",
    auth=jwt_bearer,
    response={204: None, **AUTH_ERRORS},
    summary="Revoke every session and access token of the current user",
)
async def logout_all(request: HttpRequest) -> HttpResponse:
    ctx: AccessContext = request.auth  # type: ignore[attr-defined]
    await sessions.revoke_all(request, ctx.user_id, reason="logout_all")
    response = _no_content()
    cookies.clear(response)
    return response


@auth.get("/me", auth=jwt_profile, response={200: Me, **AUTH_ERRORS}, summary="The current user")
@no_store
async def me(request: HttpRequest) -> dict[str, Any] | HttpResponse:
    ctx: AccessContext = request.auth  # type: ignore[attr-defined]
    if ctx.profile_json is not None:  # the session's snapshot, the body as it is kept
        return HttpResponse(ctx.profile_json, content_type="application/json; charset=utf-8")
    if ctx.profile is not None:  # the session's snapshot: no query (see README)
        return ctx.profile
    user = await ctx.auser()
    return {
        "id": user.pk,
        "username": user.get_username(),
        "email": getattr(user, "email", "") or "",
        "first_name": getattr(user, "first_name", "") or "",
        "last_name": getattr(user, "last_name", "") or "",
    }


def _iso(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@auth.get(
    "/sessions",
    auth=jwt_bearer,
    response={200: list[SessionOut], **AUTH_ERRORS},
    summary="The current user's live sessions",
)
@no_store
async def list_sessions(request: HttpRequest) -> list[dict[str, Any]]:
    ctx: AccessContext = request.auth  # type: ignore[attr-defined]
    return [
        {
            "id": s.sid,
            "created_at": _iso(s.created_ms),
            "last_used_at": _iso(s.last_used_ms),
            "user_agent": s.user_agent,
            "ip": s.ip,
            "current": s.sid == ctx.sid,
            "expires_at": _iso(s.refresh_exp * 1000),
        }
        for s in await store.list_sessions(ctx.user_id)
    ]


@auth.delete(
    "/sessions/{sid}",
    auth=jwt_bearer,
    response={204: None, 404: Error, **AUTH_ERRORS},
    summary="Revoke one of the current user's sessions",
)
async def delete_session(request: HttpRequest, sid: str) -> HttpResponse:
    ctx: AccessContext = request.auth  # type: ignore[attr-defined]
    if not _SID.fullmatch(sid):
        raise NotFound("No such session.")
    await sessions.revoke_one(request, ctx.user_id, sid, reason="deleted")
    return _no_content()


api.add_router("/api/auth", auth)

# --- /api/token/: drop-in aliases for djangorestframework-simplejwt clients -----------
#
# The same views, answering as simplejwt's do where its clients look (status codes, body
# keys); every error keeps our "detail" and "code" as well:
# - /blacklist/ answers 200 {} (ours 204);
# - a missing or invalid field is 400 with simplejwt's per-field lists beside detail and
#   code, {"username": ["This field is required."], ...} (ours 422);
# - a body neither JSON nor a form is 415, as DRF's parsers answer (ours 400);
# - /verify/ of a refresh token that was spent or revoked is 400 {"non_field_errors":
#   ["Token is blacklisted"]}, as simplejwt's blacklist app answers; a revoked access token
#   stays 401 token_not_valid (simplejwt cannot revoke access tokens at all).

_DRF_MESSAGES = (  # pydantic's message for our schemas -> DRF's CharField message
    ("Field required", "This field is required."),
    ("String should have at least 1 character", "This field may not be blank."),
    ("String should match pattern", "Null characters are not allowed."),
)


def _drf_message(request: HttpRequest, field: str, message: str) -> str:
    for pydantic, drf in _DRF_MESSAGES:
        if message.startswith(pydantic):
            return drf
    if message.startswith("String should have at most"):
        return "Ensure this field has no more than {} characters.".format(
            "".join(c for c in message if c.isdigit())
        )
    if message.startswith("Input should be a valid string"):
        return "This field may not be null." if _is_null(request, field) else "Not a valid string."
    return message


def _is_null(request: HttpRequest, field: str) -> bool:
    """Whether the JSON body sent ``field`` as null (a form cannot send a null)."""
    try:
        data = json.loads(request.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return isinstance(data, dict) and field in data and data[field] is None


def _as(status: int, exc: AuthApiError, **extra: Any) -> HttpResponse:
    """Our error rendered as usual, with simplejwt's status and extra keys."""
    exc.extra.update(extra)
    response = exc.response()
    response.status_code = status
    if status != 401 and "WWW-Authenticate" in response:
        del response["WWW-Authenticate"]  # a challenge belongs to a 401 only
    return response


async def _simplejwt(request: HttpRequest, answer: Awaitable[Any]) -> Any:
    """Await one of our views; its body errors answered as DRF's parsers would."""
    try:
        return await answer
    except InvalidBody as exc:
        fields: dict[str, list[str]] = {}
        for error in exc.extra.get("errors", ()):
            name = error["field"] or "non_field_errors"
            fields.setdefault(name, []).append(_drf_message(request, name, error["message"]))
        return _as(400, exc, **fields)
    except UnsupportedMediaType as exc:
        return _as(415, exc)


@no_store
async def token_obtain_pair(request: HttpRequest, response: HttpResponse) -> Any:
    return await _simplejwt(request, login(request, response))


@no_store
async def token_refresh(request: HttpRequest, response: HttpResponse) -> Any:
    return await _simplejwt(request, refresh(request, response))


async def token_verify(request: HttpRequest) -> Any:
    return await _simplejwt(request, _verify_as_simplejwt(request))


async def _verify_as_simplejwt(request: HttpRequest) -> dict[str, Any] | HttpResponse:
    token = schemas.parse(request, VerifyIn).token
    claims = tokens.decode(token, ("access", "refresh"))  # a bad token: 401 as simplejwt
    try:
        await sessions.verify(request, token)
    except DPoPInvalid:
        raise  # a bound token without its key's proof: 401, as /api/auth/verify
    except TokenInvalid:
        if claims.token_type != "refresh":
            raise  # a revoked access token: 401 token_not_valid
        blacklisted = "Token is blacklisted"
        return _as(400, TokenInvalid(blacklisted), non_field_errors=[blacklisted])
    return {}


async def token_blacklist(request: HttpRequest) -> Any:
    done = await _simplejwt(request, logout(request))
    if done.status_code != 204:
        return done
    answer = JsonResponse({})  # simplejwt's 200 {}; the cookies logout cleared go along
    answer.cookies = done.cookies
    return answer


simplejwt = Router(tags=["simplejwt aliases"])
ALIAS_ERRORS: dict[int, Any] = {400: Error, 401: Error, 413: Error, 415: Error, 503: Error}
for _path, _view, _body, _ok, _name in (
    ("/", token_obtain_pair, LoginIn, {200: TokenPair, 429: Error}, "login"),
    ("/refresh/", token_refresh, RefreshIn, {200: TokenPair, 403: Error}, "refresh"),
    ("/verify/", token_verify, VerifyIn, {200: Empty}, "verify"),
    ("/blacklist/", token_blacklist, RefreshIn, {200: Empty, 403: Error}, "logout"),
):
    simplejwt.add_api_operation(
        _path,
        ["POST"],
        _view,
        response={**_ok, **ALIAS_ERRORS},
        exclude_none=True,  # as login and refresh: TokenPair may leave out refresh
        openapi_extra=schemas.body_doc(_body),
        operation_id=f"simplejwt_{_name}",
        summary=f"Alias of /api/auth/{_name}, answering as djangorestframework-simplejwt",
    )
api.add_router("/api/token", simplejwt)

# --- the service itself: health and the JWKS document ------------------------------------

service = Router(tags=["service"])
service.add_api_operation(
    "/health",
    ["GET"],
    views.health,
    response={200: Health, 503: Health},
    summary="200 when the database and Redis answer, 503 (with Retry-After) otherwise",
)
service.add_api_operation(
    "/.well-known/jwks.json",
    ["GET"],
    views.jwks,
    response={200: Jwks, 404: Error},
    summary="The public keys that verify our tokens (asymmetric algorithms); 404 for HMAC",
)
api.add_router("", service)

# --- resource servers: RFC 8414 metadata, RFC 7662 introspection, RFC 7009 revocation ---
from authapi import oauth  # noqa: E402  (imports nothing of this module)

api.add_router("", oauth.router)

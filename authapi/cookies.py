"""``AUTHAPI_COOKIES=1``: tokens also travel in httpOnly cookies, guarded by CSRF double-submit.

A browser app then never holds a token in JavaScript. Login and refresh set

* ``authapi_access``: the access token; HttpOnly, SameSite=Lax, path ``/``;
* ``authapi_refresh``: the refresh token; HttpOnly, SameSite=Strict, path ``/api/`` only;
* ``authapi_csrf``: a random value the app reads and echoes in ``X-CSRF-Token``;

all ``Secure``, except on plain http to a loopback host (local development, where
browsers treat localhost as secure anyway and other clients would drop Secure cookies);
``AUTHAPI_COOKIE_SECURE=1`` or ``0`` forces it. A request authenticated by a cookie
(not by an ``Authorization`` header or a token in the body) must, for any method but
GET/HEAD/OPTIONS, send ``X-CSRF-Token`` (or Django's ``X-CSRFToken``) equal to the csrf
cookie, else 403 ``csrf_failed``. Logout and logout-all clear the cookies.

A response that sets the cookies leaves the refresh token out of its JSON body, so no
script on the page ever holds it; the access token stays in the body.

Cookies are only ever set for a same-origin request (``Sec-Fetch-Site`` and ``Origin``),
or one from an origin that CORS allows with credentials (``DJANGO_CORS_ALLOWED_ORIGINS``:
a single-page app on another port or subdomain of the same site), so a cross-site form
cannot log a browser into someone else's account (login CSRF); such a login still gets
its whole JSON pair, refresh token included. The cookies are SameSite: a page on another
*site* cannot use them; serve the app from the same site.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponseBase
from django.http.request import split_domain_port

from authapi import conf
from authapi.errors import CsrfFailed

ACCESS = "authapi_access"
REFRESH = "authapi_refresh"
CSRF = "authapi_csrf"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def enabled() -> bool:
    return conf.get().cookies


def check_csrf(request: HttpRequest) -> None:
    """Refuse an unsafe cookie-authenticated request without the double-submitted token."""
    if request.method in _SAFE_METHODS:
        return
    cookie = request.COOKIES.get(CSRF, "")
    header = request.headers.get(CSRF_HEADER) or request.headers.get("X-CSRFToken", "")
    if not cookie or not header or not hmac.compare_digest(cookie.encode(), header.encode()):
        raise CsrfFailed()


def access_token(request: HttpRequest) -> str | None:
    """The access token of the cookie (CSRF-checked), when cookies are on and one is set."""
    if not enabled():
        return None
    token = request.COOKIES.get(ACCESS)
    if not token:
        return None
    check_csrf(request)
    return token


def refresh_token(request: HttpRequest) -> str | None:
    """The refresh token of the cookie (CSRF-checked), for a request without a body."""
    if not enabled() or request.body.strip():
        return None
    token = request.COOKIES.get(REFRESH)
    if not token:
        return None
    check_csrf(request)
    return token


def _trusted_origins() -> set[str]:
    """Origins whose pages may hold our cookies: CORS's allowed list (with credentials)."""
    return set(getattr(settings, "CORS_ALLOWED_ORIGINS", None) or ())


def _same_origin(request: HttpRequest) -> bool:
    """Whether the request comes from our own pages, from an origin CORS allows with
    credentials (DJANGO_CORS_ALLOWED_ORIGINS), or from no browser at all."""
    site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    if origin is not None and origin in _trusted_origins():
        return site in {None, "same-origin", "same-site", "none"}
    if site is not None and site not in {"same-origin", "none"}:
        return False
    if origin is None:
        return True
    scheme = "https" if request.is_secure() else "http"
    try:
        return origin == f"{scheme}://{request.get_host()}"
    except DisallowedHost:
        return False


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "[::1]"})


def _secure(cfg: conf.AuthSettings, request: HttpRequest) -> bool:
    if cfg.cookie_secure is not None:
        return cfg.cookie_secure
    if request.is_secure():
        return True
    try:
        domain, _ = split_domain_port(request.get_host())
    except DisallowedHost:
        return True
    return domain not in _LOOPBACK


def _common(cfg: conf.AuthSettings, request: HttpRequest) -> dict[str, Any]:
    return {"secure": _secure(cfg, request), "domain": cfg.cookie_domain}


def set_pair(request: HttpRequest, response: HttpResponseBase, pair: dict[str, Any]) -> bool:
    """Carry a freshly issued pair in cookies, with a new CSRF value (same origin only).

    True when the cookies were set: the body must then not repeat the refresh token.
    """
    cfg = conf.get()
    if not cfg.cookies or not _same_origin(request):
        return False
    if pair.get("token_type") == "DPoP":
        return False  # a bound token is useless without its proof: it stays in the body
    common = _common(cfg, request)
    response.set_cookie(
        ACCESS, pair["access"], max_age=pair["expires_in"], path="/",
        httponly=True, samesite="Lax", **common,
    )  # fmt: skip
    response.set_cookie(
        REFRESH, pair["refresh"], max_age=pair["refresh_expires_in"], path="/api/",
        httponly=True, samesite="Strict", **common,
    )  # fmt: skip
    response.set_cookie(
        CSRF, secrets.token_urlsafe(32), max_age=pair["refresh_expires_in"], path="/",
        httponly=False, samesite="Lax", **common,
    )  # fmt: skip
    return True


def clear(response: HttpResponseBase) -> None:
    cfg = conf.get()
    if not cfg.cookies:
        return
    domain = cfg.cookie_domain
    response.delete_cookie(ACCESS, path="/", domain=domain, samesite="Lax")
    response.delete_cookie(REFRESH, path="/api/", domain=domain, samesite="Strict")
    response.delete_cookie(CSRF, path="/", domain=domain, samesite="Lax")

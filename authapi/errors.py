"""Every error a client can cause, as one tree rendered as ``{"detail", "code"}``.

* AuthApiError
  + BadRequest (400) / InvalidHost (400)
    + UnsupportedMediaType (415, a body neither JSON nor a form)
      x JsonSentAsForm (a JSON body under a form Content-Type)
  + PayloadTooLarge (413) / InvalidBody (422)
  + NotAuthenticated (401, no credentials) / AuthenticationFailed (401, bad credentials)
    x SecondFactorRequired / EmailNotVerified (the password alone is not enough)
  + TokenInvalid (401, a token was sent and is not acceptable)
    x RefreshReuse (a spent refresh token: its session was revoked)
    x DPoPInvalid (a DPoP proof missing or wrong) / DPoPNonceNeeded (send the server's nonce)
  + CsrfFailed (403, cookie auth without the matching X-CSRF-Token header)
  + NotFound (404) / MethodNotAllowed (405) / Throttled (429)
  + StoreUnavailable (503, Redis or the database did not answer: fail closed)
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.http import JsonResponse
from ninja.errors import HttpError

from authapi import outages


class AuthApiError(HttpError):
    """Ninja's ``HttpError``, so a host's bare ``NinjaAPI()`` renders a status, not a 500.

    Ninja's default handler gives only ``{"detail"}``; ``install_error_handlers`` adds
    ``code`` and the headers.
    """

    status: ClassVar[int] = 400
    code: ClassVar[str] = "error"
    detail: ClassVar[str] = "Bad request"
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, detail: str | None = None, *, extra: dict[str, Any] | None = None) -> None:
        self.message = detail or self.detail
        self.extra = extra or {}
        self.extra_headers: dict[str, str] = {}
        super().__init__(self.status, self.message)

    def __str__(self) -> str:
        return self.message

    def response(self) -> JsonResponse:
        response = JsonResponse(
            {"detail": self.message, "code": self.code, **self.extra}, status=self.status
        )
        for name, value in {**self.headers, **self.extra_headers}.items():
            response[name] = value
        return response


class BadRequest(AuthApiError):
    code = "parse_error"
    detail = "Malformed request body."


class UnsupportedMediaType(BadRequest):
    status = 415
    code = "unsupported_media_type"
    detail = "Send the body as application/json or application/x-www-form-urlencoded."


class JsonSentAsForm(UnsupportedMediaType):
    detail = (
        "The body is JSON but its Content-Type is application/x-www-form-urlencoded "
        "(curl -d sends that): send it with Content-Type: application/json "
        "(curl --json, or -H 'Content-Type: application/json')."
    )


class InvalidHost(AuthApiError):
    code = "bad_request"
    detail = "Invalid Host header."


class InvalidBody(AuthApiError):
    status = 422
    code = "invalid"
    detail = "The request body is not valid."


MAX_BODY = 16 * 1024  # bytes of a request body: the one limit, checked where it is read


class PayloadTooLarge(AuthApiError):
    status = 413
    code = "payload_too_large"
    detail = "Request body is larger than 16 KiB."


class NotAuthenticated(AuthApiError):
    status = 401
    code = "not_authenticated"
    detail = "Authentication credentials were not provided."
    headers = {"WWW-Authenticate": 'Bearer realm="api"'}


class AuthenticationFailed(AuthApiError):
    status = 401
    code = "no_active_account"
    detail = "No active account found with the given credentials"
    headers = {"WWW-Authenticate": 'Bearer realm="api"'}


class SecondFactorRequired(AuthenticationFailed):
    """The password was right, but the account has an active authenticator (TOTP, passkey):
    the password alone opens no session; allauth's flow asks for the second factor."""

    code = "mfa_required"
    detail = (
        "This account has a second factor: log in through /_allauth/app/v1/auth/login, "
        "which asks for it."
    )


class EmailNotVerified(AuthenticationFailed):
    """The password was right, but the account's email address is not verified yet."""

    code = "email_not_verified"
    detail = "Verify your email address first: follow the link in the mail we sent."


class TokenInvalid(AuthApiError):
    status = 401
    code = "token_not_valid"  # what simplejwt clients already match on
    detail = "Token is invalid or expired"
    headers = {"WWW-Authenticate": 'Bearer realm="api", error="invalid_token"'}


class DPoPInvalid(TokenInvalid):
    """A DPoP proof that is missing, malformed or not for this request, key or token."""

    code = "invalid_dpop_proof"
    detail = "The DPoP proof is missing or invalid"
    headers = {
        "WWW-Authenticate": 'DPoP error="invalid_dpop_proof", algs="ES256 ES384 PS256 RS256 EdDSA"'
    }


class DPoPNonceNeeded(DPoPInvalid):
    """The proof lacks the server's current nonce, which the answer carries (RFC 9449 §8)."""

    code = "use_dpop_nonce"
    detail = "Resend the DPoP proof with the nonce in the DPoP-Nonce header"
    headers = {
        "WWW-Authenticate": 'DPoP error="use_dpop_nonce", algs="ES256 ES384 PS256 RS256 EdDSA"'
    }

    def __init__(self, nonce: str) -> None:
        super().__init__()
        self.extra_headers["DPoP-Nonce"] = nonce


class DPoPGrantInvalid(DPoPInvalid):
    """A login's or refresh's DPoP proof is missing or wrong: 400, as RFC 9449 §5 says."""

    status = 400
    headers = {}


class DPoPGrantNonce(DPoPNonceNeeded):
    status = 400
    headers = {}


class RefreshReuse(TokenInvalid):
    detail = "Refresh token was already used; its session has been revoked"


class CsrfFailed(AuthApiError):
    status = 403
    code = "csrf_failed"
    detail = "A cookie-authenticated request needs an X-CSRF-Token header matching the csrf cookie."


class NotFound(AuthApiError):
    status = 404
    code = "not_found"
    detail = "Not found."


class MethodNotAllowed(AuthApiError):
    status = 405
    code = "method_not_allowed"
    detail = "Method not allowed."


class Throttled(AuthApiError):
    status = 429
    code = "throttled"
    detail = "Too many failed login attempts. Try again later."

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many failed login attempts. Try again in {retry_after} seconds.")
        self.extra_headers["Retry-After"] = str(retry_after)


class StoreUnavailable(AuthApiError):
    status = 503
    code = "service_unavailable"
    detail = "The token store is unavailable. Try again shortly."
    headers = {"Retry-After": "5"}

    def response(self) -> JsonResponse:
        response = super().response()
        # Its cause is logged once per outage (authapi.outages): Django's log_response
        # would add "Service Unavailable: <path>" for every request of it.
        response._has_been_logged = True  # type: ignore[attr-defined]
        return response


class DatabaseUnavailable(StoreUnavailable):
    detail = "The user database is unavailable. Try again shortly."

    def response(self) -> JsonResponse:
        outages.failed("database", outages.database(), self.__cause__)
        return super().response()

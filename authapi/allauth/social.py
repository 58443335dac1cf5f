"""``SocialAccountAdapter``: allauth's, answering a malformed OpenID Connect id_token as
allauth answers any bad one (400 ``invalid_token``) instead of a 500.

allauth 65.22's token flow (``POST /auth/provider/token``) reads the token before it
trusts it in ways that raise what it does not catch (``socialaccount/internal/jwtkit.py``,
``OpenIDConnectProvider.extract_uid``): a header without ``kid`` (``header["kid"]``: a
KeyError), an ``alg`` that does not fit the provider's key (it decodes with the header's
own ``alg``: HS256 hands PyJWT's HMAC an RSA key object, ES256 its EC code; a TypeError),
a signed token without ``sub`` (a KeyError). Each was an unauthenticated request that
answered 500 and logged a traceback. No such token ever logged anyone in; now none costs
a 500 either.

Before allauth verifies it, a token must also have the shape OpenID Connect Core §2 and
§3.1.3.7 give an id_token: an asymmetric ``alg`` (never ``none`` or an HMAC over a public
key) with a ``kid``, and ``iss``, ``sub``, ``aud``, ``exp``, ``iat``. allauth checks ``exp``
only where it is present: a token without one would log in for ever.
"""

from __future__ import annotations

import logging
from typing import Any

import jwt
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter, get_adapter
from allauth.socialaccount.providers.openid_connect.provider import OpenIDConnectProvider
from django.http import HttpRequest

logger = logging.getLogger("authapi.security")

ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
REQUIRED = ("iss", "sub", "aud", "exp", "iat")


def well_formed(id_token: object) -> bool:
    """An id_token's header and claims have the shape of one (its signature unread)."""
    if not isinstance(id_token, str):
        return False
    try:
        header = jwt.get_unverified_header(id_token)
        claims = jwt.decode(id_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return False
    return (
        header.get("alg") in ALGORITHMS
        and isinstance(header.get("kid"), str)
        and all(claims.get(name) not in (None, "") for name in REQUIRED)
    )


class _OpenIDConnectProvider(OpenIDConnectProvider):
    def verify_token(self, request: HttpRequest, token: Any) -> Any:
        id_token = token.get("id_token") if isinstance(token, dict) else None
        if id_token and not well_formed(id_token):
            logger.warning("social_token_refused provider=%s error=shape", self.id)
            raise get_adapter().validation_error("invalid_token")
        try:
            return super().verify_token(request, token)
        except (KeyError, TypeError) as exc:  # the token's fault: see the module docstring
            logger.warning("social_token_refused provider=%s error=%s", self.id, type(exc).__name__)
            raise get_adapter().validation_error("invalid_token") from None


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    """``SOCIALACCOUNT_ADAPTER = "authapi.allauth.social.SocialAccountAdapter"``."""

    def get_provider(self, request: HttpRequest, provider: str, client_id: Any = None) -> Any:
        found = super().get_provider(request, provider, client_id=client_id)
        if type(found) is OpenIDConnectProvider:  # not a subclass someone chose
            return _OpenIDConnectProvider(request, app=found.app)
        return found

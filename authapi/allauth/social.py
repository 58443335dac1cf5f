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
"""

from __future__ import annotations

import logging
from typing import Any

from allauth.socialaccount.adapter import DefaultSocialAccountAdapter, get_adapter
from allauth.socialaccount.providers.openid_connect.provider import OpenIDConnectProvider
from django.http import HttpRequest

logger = logging.getLogger("authapi.security")


class _OpenIDConnectProvider(OpenIDConnectProvider):
    def verify_token(self, request: HttpRequest, token: Any) -> Any:
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

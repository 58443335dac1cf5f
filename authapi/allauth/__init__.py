"""django-allauth's headless flows, ending in this service's sessions and tokens.

Set ``HEADLESS_TOKEN_STRATEGY = "authapi.allauth.TokenStrategy"`` (README, "Accounts"),
and put ``authapi.allauth.backends.ThrottledAuthenticationBackend`` in
``AUTHENTICATION_BACKENDS`` so allauth's password logins share our login throttle (that
full path: Django keeps a login's backend by its class's own path and checks it there).
With social login, ``SOCIALACCOUNT_ADAPTER = "authapi.allauth.social.SocialAccountAdapter"``
answers a malformed OpenID Connect id_token with allauth's 400, not a 500 (its own
module: it imports allauth.socialaccount, which this package does not need).
Importing this package needs django-allauth (``pip install "django-authapi[accounts]"``).
"""

from __future__ import annotations

from authapi.allauth.backends import ThrottledAuthenticationBackend
from authapi.allauth.strategy import TokenStrategy

__all__ = ["ThrottledAuthenticationBackend", "TokenStrategy"]

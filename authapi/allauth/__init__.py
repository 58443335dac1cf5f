"""django-allauth's headless flows, ending in this service's sessions and tokens.

Set ``HEADLESS_TOKEN_STRATEGY = "authapi.allauth.TokenStrategy"`` (README, "Accounts"),
and put ``authapi.allauth.backends.ThrottledAuthenticationBackend`` in
``AUTHENTICATION_BACKENDS`` so allauth's password logins share our login throttle (that
full path: Django keeps a login's backend by its class's own path and checks it there).
Importing this package needs django-allauth (``pip install "django-authapi[accounts]"``).
"""

from __future__ import annotations

from authapi.allauth.backends import ThrottledAuthenticationBackend
from authapi.allauth.strategy import TokenStrategy

__all__ = ["ThrottledAuthenticationBackend", "TokenStrategy"]

"""``AUTHAPI_ACCOUNTS=on``: django-allauth's headless app API, ending in our sessions.

Signup by email and password with the address verified by a mailed link (mandatory),
password reset by mail, TOTP with recovery codes, passkeys (WebAuthn) and social login
(OpenID Connect, GitHub, Google: each configured as a Social application in the admin, or
in ``SOCIALACCOUNT_PROVIDERS``). Mails link to ``AUTHAPI_FRONTEND_URL``.
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import Any

AVAILABLE = find_spec("allauth") is not None
APPS = [
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "allauth.socialaccount.providers.github",
    "allauth.socialaccount.providers.google",
    "allauth.headless",
]
MIDDLEWARE = "allauth.account.middleware.AccountMiddleware"  # after AuthenticationMiddleware
BACKENDS = [
    "authapi.backends.ThrottledModelBackend",  # the admin (username)
    "authapi.allauth.backends.ThrottledAuthenticationBackend",  # allauth's login (email)
]


def settings(frontend_url: str, *, https: bool) -> dict[str, Any]:
    """The allauth settings of the demo, for a web client at ``frontend_url``."""
    return {
        # allauth marks a used TOTP code, counts its rate limits and remembers the id_tokens
        # it took (jti) in the cache: one for every worker and instance (on the store), or
        # each would take a code again and allow each limit again
        "CACHES": {"default": {"BACKEND": "authapi.cache.StoreCache"}},
        "HEADLESS_ONLY": True,
        "HEADLESS_CLIENTS": ("app",),
        "HEADLESS_TOKEN_STRATEGY": "authapi.allauth.TokenStrategy",
        "HEADLESS_SERVE_SPECIFICATION": True,
        "HEADLESS_FRONTEND_URLS": {
            "account_confirm_email": f"{frontend_url}/account/verify-email/{{key}}",
            "account_reset_password_from_key": (
                f"{frontend_url}/account/password/reset/key/{{key}}"
            ),
            "account_signup": f"{frontend_url}/account/signup",
            "socialaccount_login_error": f"{frontend_url}/account/provider/callback",
        },
        "ACCOUNT_LOGIN_METHODS": {"email"},
        "ACCOUNT_SIGNUP_FIELDS": ["email*", "password1*"],
        "ACCOUNT_EMAIL_VERIFICATION": "mandatory",
        # following the link in the flow that signed up completes the login: tokens
        "ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION": True,
        "ACCOUNT_UNIQUE_EMAIL": True,
        "ACCOUNT_DEFAULT_HTTP_PROTOCOL": "https" if https else "http",
        "MFA_SUPPORTED_TYPES": ["totp", "recovery_codes", "webauthn"],
        "MFA_PASSKEY_LOGIN_ENABLED": True,
        "MFA_TOTP_ISSUER": "authapi",
        # Not MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN: fido2 accepts http://localhost already (the
        # one plain-http origin a browser allows WebAuthn on), and the setting would skip
        # the origin check of every assertion (any origin, https://evil.example too).
        "SOCIALACCOUNT_PROVIDERS": {"openid_connect": {"OAUTH_PKCE_ENABLED": True}},
        "SOCIALACCOUNT_EMAIL_AUTHENTICATION": False,
        # a malformed id_token: allauth's 400 invalid_token, not a 500 (authapi.allauth.social)
        "SOCIALACCOUNT_ADAPTER": "authapi.allauth.social.SocialAccountAdapter",
    }

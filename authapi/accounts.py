"""What django-allauth's accounts change at our own login door (``/api/auth/login``).

A password alone is not enough for an account that allauth has given more: an active
authenticator (TOTP, a passkey) asks for the second factor, and a mandatory email
verification that has not happened yet refuses the login, as allauth's own login would.
Nothing here imports allauth unless its apps are installed, so the core app needs none.

``DatabaseError`` stops here: it becomes ``DatabaseUnavailable`` (503).
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.db import DatabaseError

from authapi.errors import (
    AuthApiError,
    DatabaseUnavailable,
    EmailNotVerified,
    SecondFactorRequired,
)


async def password_alone_refused(user: Any) -> AuthApiError | None:
    """The error that refuses ``user`` a password-only login, or None when it may pass."""
    try:
        if apps.is_installed("allauth.mfa") and await _has_authenticator(user):
            return SecondFactorRequired()
        if apps.is_installed("allauth.account") and await _unverified(user):
            return EmailNotVerified()
    except DatabaseError as exc:
        raise DatabaseUnavailable() from exc
    return None


async def _has_authenticator(user: Any) -> bool:
    """An authenticator that is a factor of its own (recovery codes only back one up)."""
    from allauth.mfa.models import Authenticator

    factors = [Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN]
    return bool(await Authenticator.objects.filter(user_id=user.pk, type__in=factors).aexists())


async def _unverified(user: Any) -> bool:
    """Verification is mandatory and the account has addresses, none verified. An account
    with no address row at all was made by an operator (createsuperuser), not by signup."""
    from allauth.account import app_settings
    from allauth.account.models import EmailAddress

    if app_settings.EMAIL_VERIFICATION != app_settings.EmailVerificationMethod.MANDATORY:
        return False
    addresses = EmailAddress.objects.filter(user_id=user.pk)
    return await addresses.aexists() and not await addresses.filter(verified=True).aexists()

"""allauth's signals, ending or updating this service's sessions.

allauth's logout never calls the token strategy, so it is caught here, as are the other
events that change what a session of ours may do:

- a logout (``DELETE /_allauth/app/v1/auth/session``, Django's ``user_logged_out``) ends
  the session the flow's Django session is bound to;
- a password reset or change ends every session of the user (the model signal of
  :mod:`authapi.signals` does too when the hash changes; this covers allauth's own path
  whatever the save did);
- a reauthentication (step-up: password, TOTP, passkey) writes the session's new ``amr``,
  which the next refresh carries.
"""

from __future__ import annotations

from typing import Any

from allauth.account.authentication import get_authentication_records
from allauth.account.signals import authentication_step_completed, password_changed, password_reset
from django.contrib.auth.signals import user_logged_out
from django.http import HttpRequest

from authapi import events, syncstore, users
from authapi.allauth.amr import of_records
from authapi.allauth.strategy import SID, UID


def _ours(request: HttpRequest | None) -> tuple[Any, str] | None:
    """(user id, sid) of the session of ours the request's Django session is bound to."""
    session = getattr(request, "session", None)
    if session is None or session.get(SID) is None:
        return None
    return session.get(UID), session.get(SID)


def _logged_out(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    bound = _ours(request)
    if bound is not None and syncstore.revoke_session(*bound):
        events.emit_sync(
            "session_revoked", user_id=bound[0], session_id=bound[1], reason="allauth_logout"
        )


def _password(sender: Any, request: HttpRequest | None = None, user: Any = None, **kw: Any) -> None:
    if user is None or user.pk is None:
        return
    user_id = users.user_id_of(user)
    count = syncstore.revoke_user(user_id)
    events.emit_sync(
        "user_sessions_revoked", user_id=user_id, reason="password_changed", sessions=count
    )


def _step(sender: Any, request: HttpRequest | None = None, user: Any = None, **kw: Any) -> None:
    """A step-up within a live session: the next refresh says how the user proved it."""
    bound = _ours(request)
    if not kw.get("reauthenticated") or bound is None or request is None or user is None:
        return
    amr = of_records(get_authentication_records(request, user))
    if amr:
        syncstore.set_fields(*bound, {"amr": " ".join(amr)})


def connect() -> None:
    user_logged_out.connect(_logged_out, dispatch_uid="authapi.allauth.logged_out")
    password_reset.connect(_password, dispatch_uid="authapi.allauth.password_reset")
    password_changed.connect(_password, dispatch_uid="authapi.allauth.password_changed")
    authentication_step_completed.connect(_step, dispatch_uid="authapi.allauth.step")

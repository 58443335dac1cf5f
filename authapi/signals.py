"""Account changes end sessions by themselves: a new password hash, ``is_active=False``
or a deleted user revokes every session and access token of that user.

Caught on the model's save and delete, so it covers ``set_password()`` + ``save()``, the
admin, ``changepassword`` and any code that saves a new hash. ``QuerySet.update()`` sends
no signals; refresh re-checks that the user exists and is active all the same.
Revocation runs when the change commits, and a login re-reads the user after starting its
session, so a login that raced the change cannot outlive it. Any other change to the
user's public fields (username, email, names) is copied into their sessions, which is
what ``/me`` answers from.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save

from authapi import events, syncstore, users

_WATCHED = {"password", "is_active"}


def _fields(model: Any) -> list[str]:
    names = {f.name for f in model._meta.concrete_fields}
    wanted = ["password", "is_active", model.USERNAME_FIELD, *users.PROFILE_FIELDS]
    return [name for name in dict.fromkeys(wanted) if name in names]


def _before_save(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    instance._authapi_revoke = False
    instance._authapi_profile = False
    if instance.pk is None or getattr(instance, "_authapi_rehash", False):
        return
    fields = _fields(sender)
    if update_fields is not None and not set(fields) & set(update_fields):
        return
    old = sender._default_manager.filter(pk=instance.pk).values(*fields).first()
    if old is None:
        return
    instance._authapi_revoke = old.get("password") != instance.password or (
        old.get("is_active", True) and not getattr(instance, "is_active", True)
    )
    shown = [name for name in fields if name not in _WATCHED]
    instance._authapi_profile = any(old[n] != getattr(instance, n, None) for n in shown)


def _after_save(
    sender: Any, instance: Any, created: bool = False, using: str = "default", **kwargs: Any
) -> None:
    if getattr(instance, "_authapi_revoke", False):
        instance._authapi_revoke = False
        _on_commit(instance.pk, "account_changed", using)
    elif getattr(instance, "_authapi_profile", False):
        instance._authapi_profile = False
        user_id, profile = users.user_id_of(instance), users.profile_json(instance)
        transaction.on_commit(lambda: syncstore.update_profile(user_id, profile), using=using)


def _after_delete(sender: Any, instance: Any, using: str = "default", **kwargs: Any) -> None:
    _on_commit(instance.pk, "user_deleted", using)


def _on_commit(pk: Any, reason: str, using: str) -> None:
    """Revoke once the change is visible to other connections (at once in autocommit):
    a login that reads the user after the revocation then sees the new row."""
    transaction.on_commit(lambda: revoke_user_sync(pk, reason), using=using, robust=False)


def revoke_user_sync(pk: Any, reason: str) -> int:
    """End all sessions of the user with primary key ``pk`` from synchronous code."""
    user_id = users.id_claim(pk)
    count = syncstore.revoke_user(user_id)  # a thread's own client, not the event loop's
    events.emit_sync("user_sessions_revoked", user_id=user_id, reason=reason, sessions=count)
    return count


def connect() -> None:
    model = get_user_model()
    pre_save.connect(_before_save, sender=model, dispatch_uid="authapi.before_save")
    post_save.connect(_after_save, sender=model, dispatch_uid="authapi.after_save")
    post_delete.connect(_after_delete, sender=model, dispatch_uid="authapi.after_delete")

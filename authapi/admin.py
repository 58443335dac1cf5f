"""Each user's live sessions on their admin page, with buttons to end one or all of them,
and a "Log out everywhere" action on the users list.

Whatever admin the project registered for its user model (Django's ``UserAdmin`` by
default) is registered again as a subclass with :class:`SessionsAdminMixin`, the
documented way to extend an admin; with no admin registered for the user model nothing
changes. A project that registers its own user admin after this app has loaded mixes it
in itself: ``class MyUserAdmin(SessionsAdminMixin, UserAdmin)``.

The buttons POST, with Django's CSRF token, to views that need the change permission on
that user; they send the same security events as the API (``session_revoked``,
``user_sessions_revoked``) with ``reason="admin"`` and ``by``, the staff user's id.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.utils import quote, unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import select_template
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from authapi import events, store, users
from authapi.errors import StoreUnavailable

_SID = re.compile(r"[A-Za-z0-9_-]{16,64}")  # fullmatch, as the API's DELETE /sessions/{id}
TEMPLATE = "authapi/admin/user_change_form.html"


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


async def _end_session(request: HttpRequest, user_id: int | str, sid: str, by: Any) -> bool:
    if not await store.revoke_session(user_id, sid):
        return False
    await events.emit(
        "session_revoked", request, user_id=user_id, session_id=sid, reason="admin", by=by
    )
    return True


async def _end_all(request: HttpRequest, user_ids: list[int | str], by: Any) -> int:
    ended = 0
    for user_id in user_ids:
        count = await store.revoke_user(user_id)
        await events.emit(
            "user_sessions_revoked",
            request,
            user_id=user_id,
            reason="admin",
            sessions=count,
            by=by,
        )
        ended += count
    return ended


if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Any]
else:  # generic only in django-stubs
    _ModelAdmin = admin.ModelAdmin


class SessionsAdminMixin(_ModelAdmin):
    """A user model's admin, plus its sessions: listed on the change page, ended by POST."""

    change_form_template = TEMPLATE  # extends the one the admin would have used

    # --- the change page ------------------------------------------------------------------

    def _base_template(self) -> Any:
        base = super().change_form_template
        if isinstance(base, str):
            return select_template([base])
        if base:
            return base if hasattr(base, "render") else select_template(list(base))
        opts = self.opts
        return select_template(
            [
                f"admin/{opts.app_label}/{opts.model_name}/change_form.html",
                f"admin/{opts.app_label}/change_form.html",
                "admin/change_form.html",
            ]
        )

    def _url(self, name: str, *args: Any) -> str:
        opts = self.opts
        return reverse(
            f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_{name}", args=args
        )

    def _sessions_context(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        user_id = users.user_id_of(obj)
        try:
            live = store.run_sync(lambda: store.list_sessions(user_id))
        except StoreUnavailable:
            return {"authapi_sessions_error": "The session store does not answer: try again."}
        pk = quote(obj.pk)
        rows = [
            {
                "sid": s.sid,
                "created": _at(s.created_ms / 1000),
                "last_used": _at(s.last_used_ms / 1000),
                "user_agent": s.user_agent,
                "ip": s.ip,
                "expires": _at(s.refresh_exp),
                "ends": _at(s.max_exp),
                "revoke_url": self._url("authapi_revoke_session", pk, s.sid),
            }
            for s in live
        ]
        return {
            "authapi_sessions": rows,
            "authapi_can_revoke": self.has_change_permission(request, obj),
            "authapi_revoke_all_url": self._url("authapi_revoke_all", pk),
        }

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any | None = None,
    ) -> Any:
        context["authapi_base_template"] = self._base_template()
        if not add and obj is not None:
            context.update(self._sessions_context(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- the POST views -------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        opts = self.opts
        prefix = f"{opts.app_label}_{opts.model_name}"
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/sessions/revoke-all/",
                wrap(require_POST(self.revoke_all_view)),
                name=f"{prefix}_authapi_revoke_all",
            ),
            path(
                "<path:object_id>/sessions/<str:sid>/revoke/",
                wrap(require_POST(self.revoke_session_view)),
                name=f"{prefix}_authapi_revoke_session",
            ),
            *super().get_urls(),
        ]

    def _changeable(self, request: HttpRequest, object_id: str) -> Any:
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("No such user.")
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        return obj

    def _back(self, obj: Any) -> HttpResponse:
        return HttpResponseRedirect(self._url("change", quote(obj.pk)))

    def revoke_session_view(self, request: HttpRequest, object_id: str, sid: str) -> HttpResponse:
        """End one session of the user; every token issued in it is refused from now on."""
        obj = self._changeable(request, object_id)
        user_id, by = users.user_id_of(obj), request.user.pk
        try:
            ended = _SID.fullmatch(sid) is not None and store.run_sync(
                lambda: _end_session(request, user_id, sid, by)
            )
        except StoreUnavailable:
            self.message_user(request, "The session store does not answer.", messages.ERROR)
            return self._back(obj)
        if ended:
            self.message_user(request, "The session was ended.", messages.SUCCESS)
        else:
            self.message_user(request, "That session had already ended.", messages.WARNING)
        return self._back(obj)

    def revoke_all_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """End every session and access token of the user."""
        obj = self._changeable(request, object_id)
        user_id, by = users.user_id_of(obj), request.user.pk
        try:
            ended = store.run_sync(lambda: _end_all(request, [user_id], by))
        except StoreUnavailable:
            self.message_user(request, "The session store does not answer.", messages.ERROR)
            return self._back(obj)
        self.message_user(
            request, f"Logged out everywhere: {ended} session(s) ended.", messages.SUCCESS
        )
        return self._back(obj)

    # --- the users list -------------------------------------------------------------------

    @admin.action(description="Log out everywhere (end every session)")
    def log_out_everywhere(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        user_ids = [
            users.user_id_of(user) for user in queryset if self.has_change_permission(request, user)
        ]
        by = request.user.pk
        try:
            ended = store.run_sync(lambda: _end_all(request, user_ids, by))
        except StoreUnavailable:
            self.message_user(request, "The session store does not answer.", messages.ERROR)
            return
        self.message_user(
            request,
            f"Logged {len(user_ids)} user(s) out everywhere: {ended} session(s) ended.",
            messages.SUCCESS,
        )

    def get_actions(self, request: HttpRequest, action_location: Any = None) -> dict[str, Any]:
        # Django 6.1 says where the actions show (the list or, new there, the change form) and
        # deprecates overrides without the parameter; 5.2 never passes it.
        parent: Any = super().get_actions
        if action_location is None:
            actions: dict[str, Any] = parent(request)
        else:
            actions = parent(request, action_location=action_location)
        if self.actions is None or IS_POPUP_VAR in request.GET:
            return actions
        if action_location is not None and action_location.name != "CHANGE_LIST":
            return actions
        if self.has_change_permission(request):
            actions.setdefault("log_out_everywhere", self.get_action("log_out_everywhere"))
        return actions


def register(site: admin.AdminSite = admin.site) -> None:
    """Give the user model's admin on ``site`` its sessions; nothing if it has none."""
    model = get_user_model()
    if not site.is_registered(model):
        return
    current = site.get_model_admin(model)
    if isinstance(current, SessionsAdminMixin):
        return
    base = type(current)
    extended = type(base.__name__, (SessionsAdminMixin, base), {"__module__": __name__})
    site.unregister(model)
    site.register(model, extended)


register()

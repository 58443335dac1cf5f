"""A changed password, a deactivated or a deleted user ends every session by itself."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AdminPasswordChangeForm, SetPasswordForm
from django.contrib.auth.hashers import make_password

from tests.conftest import PASSWORD, ROOT, alive, bearer, login

NEW_PASSWORD = "a brand new passphrase 42"


async def _refresh_status(client, refresh: str) -> int:
    return (await client.post("/api/auth/refresh", json={"refresh": refresh})).status_code


async def _assert_all_dead(client, pairs) -> None:
    for pair in pairs:
        assert not await alive(client, pair["access"])
        assert await _refresh_status(client, pair["refresh"]) == 401


def _set_password_and_save(user):
    user.set_password(NEW_PASSWORD)
    user.save()


def _admin_form(user):
    form = AdminPasswordChangeForm(user, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert form.is_valid(), form.errors
    form.save()


def _set_password_form(user):
    form = SetPasswordForm(user, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert form.is_valid(), form.errors
    form.save()


def _save_with_update_fields(user):
    user.set_password(NEW_PASSWORD)
    user.save(update_fields=["password"])


@pytest.mark.parametrize(
    "change",
    [_set_password_and_save, _admin_form, _set_password_form, _save_with_update_fields],
    ids=["set_password-save", "admin-form", "set-password-form", "update_fields"],
)
async def test_password_change_ends_every_session(client, user, make_user, change):
    bystander = await make_user()
    theirs = await login(client, bystander)
    pairs = [await login(client, user) for _ in range(3)]
    await sync_to_async(change)(user)
    await _assert_all_dead(client, pairs)
    assert await alive(client, theirs["access"])
    # the old password no longer logs in; the new one does
    old = await client.post(
        "/api/auth/login", json={"username": user.username, "password": PASSWORD}
    )
    assert old.status_code == 401
    fresh = await login(client, user, password=NEW_PASSWORD)
    assert await alive(client, fresh["access"])


async def test_saving_other_fields_ends_nothing(client, user):
    pair = await login(client, user)

    def edit():
        user.first_name = "Renamed"
        user.save()
        user.last_login = None
        user.save(update_fields=["last_login"])

    await sync_to_async(edit)()
    assert await alive(client, pair["access"])
    assert await _refresh_status(client, pair["refresh"]) == 200


async def test_changepassword_command_ends_every_session(client, user):
    """``manage.py changepassword`` in its own process, as an operator runs it."""
    pair = await login(client, user)
    # changepassword reads the password from a terminal with getpass: answer it in-process
    script = (
        "import getpass, sys, django; getpass.getpass = lambda prompt='': sys.argv[2]; "
        "django.setup(); from django.core.management import call_command; "
        "call_command('changepassword', sys.argv[1])"
    )
    result = await sync_to_async(subprocess.run)(
        [sys.executable, "-c", script, user.username, NEW_PASSWORD],
        cwd=ROOT,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    await _assert_all_dead(client, [pair])


async def test_deactivation_ends_every_session(client, user):
    pairs = [await login(client, user) for _ in range(2)]

    def deactivate():
        user.is_active = False
        user.save()

    await sync_to_async(deactivate)()
    await _assert_all_dead(client, pairs)
    response = await client.post(
        "/api/auth/login", json={"username": user.username, "password": PASSWORD}
    )
    assert response.status_code == 401


async def test_deletion_ends_every_session(client, user):
    pairs = [await login(client, user) for _ in range(2)]
    await sync_to_async(user.delete)()
    await _assert_all_dead(client, pairs)


async def test_queryset_update_of_is_active_is_caught_at_refresh(client, user):
    """No signal fires for QuerySet.update(); refresh re-checks the user before minting."""
    pair = await login(client, user)
    model = get_user_model()
    await model.objects.filter(pk=user.pk).aupdate(is_active=False)
    assert await _refresh_status(client, pair["refresh"]) == 401
    # and the session is gone for good, even once the user is active again
    await model.objects.filter(pk=user.pk).aupdate(is_active=True)
    assert await _refresh_status(client, pair["refresh"]) == 401
    assert not await alive(client, pair["access"])


async def test_queryset_update_of_the_password_is_caught_at_refresh(client, user):
    pair = await login(client, user)
    model = get_user_model()
    await model.objects.filter(pk=user.pk).aupdate(password=make_password(NEW_PASSWORD))
    response = await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"
    assert not await alive(client, pair["access"])


async def test_queryset_delete_is_caught(client, user):
    pair = await login(client, user)
    await get_user_model().objects.filter(pk=user.pk).adelete()
    assert await _refresh_status(client, pair["refresh"]) == 401
    assert not await alive(client, pair["access"])


async def test_me_for_a_user_deleted_without_signals(client, user):
    """A raw-SQL delete sends no signal: /me answers from the session's snapshot, as every
    claims-only route does, until the next refresh finds the user gone and ends the
    session (README: what each path trusts and for how long)."""
    from django.db import connection

    pair = await login(client, user)
    table = get_user_model()._meta.db_table

    def raw_delete():
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {table} WHERE id = %s", [user.pk])

    await sync_to_async(raw_delete)()
    response = await client.get("/api/auth/me", headers=bearer(pair["access"]))
    assert response.status_code == 200 and response.json()["username"] == user.username
    assert await _refresh_status(client, pair["refresh"]) == 401
    response = await client.get("/api/auth/me", headers=bearer(pair["access"]))
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


async def test_me_shows_a_saved_change_to_the_users_fields(client, user):
    pair = await login(client, user)
    fresh = await get_user_model().objects.aget(pk=user.pk)
    fresh.email, fresh.first_name = "new@example.com", "Ada"
    await fresh.asave()
    me = (await client.get("/api/auth/me", headers=bearer(pair["access"]))).json()
    assert (me["email"], me["first_name"]) == ("new@example.com", "Ada")
    assert await alive(client, pair["access"])  # not a change that ends sessions


async def test_me_reads_no_database(client, user):
    """/me answers from the one Redis command of the access check: the user lookup (the
    only way it reads the database) is never called."""
    from authapi import users

    pair = await login(client, user)
    calls: list[object] = []
    original = users.get_user

    async def spy(user_id):
        calls.append(user_id)
        return await original(user_id)

    users.get_user = spy
    try:
        for _ in range(5):
            me = await client.get("/api/auth/me", headers=bearer(pair["access"]))
            assert me.status_code == 200 and me.json()["id"] == user.pk
    finally:
        users.get_user = original
    assert calls == []


async def test_password_change_through_the_admin_pages_ends_sessions(client, make_user):
    """The real admin, over HTTP: log in as staff, change a user's password on its page."""
    import re

    import httpx

    from project.asgi import application

    staff = await make_user(is_staff=True, is_superuser=True)
    target = await make_user()
    pairs = [await login(client, target) for _ in range(2)]
    transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 50004))

    def csrf_of(page: httpx.Response) -> str:
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert found is not None, page.text[:500]
        return found[1]

    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as admin:
        page = await admin.get("/admin/login/")
        form = {"username": staff.username, "password": PASSWORD, "next": "/admin/"}
        done = await admin.post(
            "/admin/login/", data={**form, "csrfmiddlewaretoken": csrf_of(page)}
        )
        assert done.status_code == 302
        url = f"/admin/auth/user/{target.pk}/password/"
        page = await admin.get(url)
        assert page.status_code == 200
        changed = await admin.post(
            url,
            data={
                "csrfmiddlewaretoken": csrf_of(page),
                "password1": NEW_PASSWORD,
                "password2": NEW_PASSWORD,
                "usable_password": "true",
            },
        )
        assert changed.status_code == 302, changed.text[:2000]
    await _assert_all_dead(client, pairs)
    await login(client, target, password=NEW_PASSWORD)


async def _plant_snapshot(user, access: str, value: str | None) -> None:
    import jwt as pyjwt

    from authapi import store

    key = store.session_key(
        user.pk, pyjwt.decode(access, options={"verify_signature": False})["sid"]
    )
    if value is None:
        await store._run(lambda s: s.redis.hdel(key, "prof"))
    else:
        await store._run(lambda s: s.redis.hset(key, "prof", value))


async def test_me_sends_the_snapshot_as_the_database_path_would_render_it(client, user):
    pair = await login(client, user)
    kept = await client.get("/api/auth/me", headers=bearer(pair["access"]))
    await _plant_snapshot(user, pair["access"], None)  # no snapshot: the user row
    read = await client.get("/api/auth/me", headers=bearer(pair["access"]))
    assert kept.status_code == read.status_code == 200
    assert kept.content == read.content  # byte for byte
    assert kept.headers["Content-Type"] == read.headers["Content-Type"]
    assert kept.headers["Cache-Control"] == read.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "snapshot",
    [
        '{"id": 1, "username": "x", "email": "", "first_name": "", "last_name": "", '
        '"is_staff": true}',
        '{"id": 1, "username": "x"}',
        "not json",
        "[1, 2]",
    ],
    ids=["extra field", "missing fields", "not json", "not an object"],
)
async def test_a_snapshot_of_another_shape_is_never_sent_as_it_is(client, user, snapshot):
    pair = await login(client, user)
    await _plant_snapshot(user, pair["access"], snapshot)
    me = await client.get("/api/auth/me", headers=bearer(pair["access"]))
    assert me.status_code == 200
    assert set(me.json()) == {"id", "username", "email", "first_name", "last_name"}
    assert "is_staff" not in me.text

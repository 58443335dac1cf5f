"""``manage.py authapi sessions|revoke``: what operators run, with clear errors."""

from __future__ import annotations

import io

import jwt
import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.conftest import alive, login


def _sid(token: str) -> str:
    return jwt.decode(token, options={"verify_signature": False})["sid"]


async def _run(*args: str) -> str:
    out = io.StringIO()
    await sync_to_async(call_command)("authapi", *args, stdout=out)
    return out.getvalue()


async def test_sessions_lists_each_live_session(client, user):
    assert "no live sessions" in await _run("sessions", user.username)
    a = await login(client, user, headers={"User-Agent": "cli-test/1"})
    b = await login(client, user)
    text = await _run("sessions", user.username)
    assert _sid(a["access"]) in text and _sid(b["access"]) in text
    assert "cli-test/1" in text and "127.0.0.1" in text
    assert a["access"] not in text and a["refresh"] not in text


async def test_revoke_one_session(client, user):
    a = await login(client, user)
    b = await login(client, user)
    text = await _run("revoke", user.username, f"--session={_sid(a['access'])}")
    assert "Revoked session" in text
    assert not await alive(client, a["access"])
    assert await alive(client, b["access"])


async def test_a_session_id_that_starts_with_a_dash_is_taken_as_an_id(client, user):
    """Ids are base64url: one in 64 starts with "-", which argparse takes for an option
    unless given as --session=SID (how README and the help spell it)."""
    with pytest.raises(CommandError, match="has no live session '-AbC'"):
        await _run("revoke", user.username, "--session=-AbC")


async def test_revoke_all_sessions(client, make_user):
    user, other = await make_user(), await make_user()
    pairs = [await login(client, user) for _ in range(2)]
    theirs = await login(client, other)
    assert "Revoked 2 session(s)" in await _run("revoke", user.username, "--all")
    for pair in pairs:
        assert not await alive(client, pair["access"])
    assert await alive(client, theirs["access"])


@pytest.mark.parametrize(
    "args",
    [("sessions", "no-such-user"), ("revoke", "no-such-user", "--all")],
    ids=["sessions", "revoke"],
)
async def test_unknown_user_is_a_clear_error(args):
    with pytest.raises(CommandError, match="No user named 'no-such-user'"):
        await _run(*args)


async def test_unknown_session_is_a_clear_error(user):
    with pytest.raises(CommandError, match="has no live session"):
        await _run("revoke", user.username, "--session", "A" * 22)


async def test_revoke_needs_a_target(user):
    with pytest.raises(CommandError):
        await _run("revoke", user.username)

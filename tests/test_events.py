"""Security events: each signal once, with the right fields; the log never holds a secret."""

from __future__ import annotations

import logging
from contextlib import contextmanager

import jwt
import pytest
from asgiref.sync import sync_to_async

from authapi import events
from tests.conftest import PASSWORD, bearer, login

NAMES = [
    "login_succeeded",
    "login_failed",
    "token_refreshed",
    "refresh_reuse_detected",
    "session_revoked",
    "user_sessions_revoked",
]
UA = "events-test/1.0"


@contextmanager
def recorded():
    """Every authapi signal sent inside, as (name, fields) in order."""
    seen: list[tuple[str, dict]] = []
    receivers = {}
    for name in NAMES:

        def receiver(sender, name=name, **fields):
            seen.append((name, fields))

        receivers[name] = receiver
        getattr(events, name).connect(receiver)
    try:
        yield seen
    finally:
        for name, receiver in receivers.items():
            getattr(events, name).disconnect(receiver)


def _sid(token: str) -> str:
    return jwt.decode(token, options={"verify_signature": False})["sid"]


@pytest.fixture
def security_log(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


async def test_login_succeeded(client, user):
    with recorded() as seen:
        pair = await login(client, user, headers={"User-Agent": UA})
    assert [name for name, _ in seen] == ["login_succeeded"]
    fields = seen[0][1]
    assert fields["user_id"] == user.pk and fields["session_id"] == _sid(pair["access"])
    assert fields["ip"] == "127.0.0.1" and fields["user_agent"] == UA
    assert fields["request"] is not None


async def test_login_failed(client, user):
    with recorded() as seen:
        await client.post("/api/auth/login", json={"username": user.username, "password": "no"})
        await client.post("/api/auth/login", json={"username": "nobody-here", "password": "no"})
    assert [name for name, _ in seen] == ["login_failed", "login_failed"]
    assert seen[0][1]["user_id"] == user.pk
    assert seen[1][1]["user_id"] is None


async def test_token_refreshed(client, user):
    pair = await login(client, user)
    with recorded() as seen:
        await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
    assert [name for name, _ in seen] == ["token_refreshed"]
    assert seen[0][1]["session_id"] == _sid(pair["refresh"])


async def test_reuse_is_detected_and_revokes_once(client, user, security_log):
    pair = await login(client, user)
    await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
    security_log.clear()
    with recorded() as seen:
        await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
    assert [name for name, _ in seen] == ["refresh_reuse_detected", "session_revoked"]
    assert seen[1][1]["reason"] == "reuse"
    warnings = [
        r for r in security_log.records
        if r.name == "authapi.security" and r.levelno == logging.WARNING
    ]  # fmt: skip
    assert len(warnings) == 1
    assert warnings[0].security["event"] == "refresh_reuse_detected"
    assert warnings[0].security["session_id"] == _sid(pair["refresh"])


async def test_logout_and_session_delete_and_logout_all(client, user):
    a = await login(client, user)
    b = await login(client, user)
    c = await login(client, user)
    with recorded() as seen:
        await client.post("/api/auth/logout", json={"refresh": a["refresh"]})
        await client.delete(f"/api/auth/sessions/{_sid(b['access'])}", headers=bearer(c["access"]))
        await client.post("/api/auth/logout-all", headers=bearer(c["access"]))
    assert [(n, f.get("reason")) for n, f in seen] == [
        ("session_revoked", "logout"),
        ("session_revoked", "deleted"),
        ("user_sessions_revoked", "logout_all"),
    ]
    assert seen[0][1]["session_id"] == _sid(a["access"])
    assert seen[1][1]["session_id"] == _sid(b["access"])
    assert seen[2][1]["user_id"] == user.pk and seen[2][1]["sessions"] == 1


async def test_password_change_fires_once(client, user):
    await login(client, user)

    def change():
        user.set_password("another good password")
        user.save()

    with recorded() as seen:
        await sync_to_async(change)()
    assert [(n, f["reason"]) for n, f in seen] == [("user_sessions_revoked", "account_changed")]
    assert seen[0][1]["user_id"] == user.pk and seen[0][1]["sessions"] == 1


async def test_a_failing_receiver_does_not_break_the_request(client, user, security_log):
    def broken(sender, **fields):
        raise RuntimeError("receiver bug")

    events.login_succeeded.connect(broken)
    try:
        pair = await login(client, user)
    finally:
        events.login_succeeded.disconnect(broken)
    assert pair["access"]
    assert any("receiver" in r.getMessage() for r in security_log.records)


async def test_no_token_or_password_ever_reaches_the_log(client, user, security_log, capsys):
    """A whole life cycle, every event and error path; then search everything captured."""
    pair = await login(client, user, headers={"User-Agent": UA})
    nxt = (await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})).json()
    await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})  # reuse
    again = await login(client, user)
    await client.get("/api/auth/me", headers=bearer(again["access"] + "x"))
    await client.post("/api/auth/verify", json={"token": again["refresh"][:-3]})
    await client.post("/api/auth/login", json={"username": user.username, "password": "s3cr3t-x"})
    await client.post(
        "/api/auth/logout", json={"refresh": again["refresh"]}, headers=bearer(again["access"])
    )
    await client.post("/api/auth/login", content=b"{broken", headers={"Content-Type": "a/json"})
    captured = capsys.readouterr()
    text = "\n".join(
        [captured.out, captured.err]
        + [r.getMessage() for r in security_log.records]
        + [repr(getattr(r, "security", "")) for r in security_log.records]
    )
    assert "event='login_succeeded'" in text  # the log was captured at all
    for secret in (PASSWORD, "s3cr3t-x"):
        assert secret not in text
    for pair_ in (pair, nxt, again):
        for token in (pair_["access"], pair_["refresh"]):
            for part in token.split("."):
                assert part not in text

"""``GET /metrics``: who may scrape, what is counted, and that the counts add up exactly
across two uvicorn workers, a killed worker and a restart."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import jwt
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from authapi import events, metrics
from authapi.asgi.instrument import instrument
from authapi.errors import StoreUnavailable
from project.asgi import django_application
from tests.conftest import PASSWORD, LiveServer, bearer, login

TOKEN = "metrics-scrape-token-for-tests-0123456789"

# The one-line hooks asked of the lead (see the README's "Operating it"); until they are in,
# the tests that need them skip, saying which.


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _by(samples, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: value for (n, labels), value in samples.items() if n == name}


def _here():
    """This process's metrics (the test session's own folder)."""
    return _samples(metrics.render().decode())


def _delta(before, after, name: str, label: str) -> dict[str, float]:
    old = _by(before, name, label)
    return {k: v - old.get(k, 0.0) for k, v in _by(after, name, label).items() if v != old.get(k)}


# --- who may scrape -------------------------------------------------------------------


async def test_metrics_are_a_404_without_a_configured_token(client):
    response = await client.get("/metrics", headers=bearer(TOKEN))
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize(
    "header, code",
    [
        (None, "not_authenticated"),
        (f"Basic {TOKEN}", "not_authenticated"),
        ("Bearer wrong-token", "token_not_valid"),
        (f"Bearer {TOKEN}x", "token_not_valid"),
        (f"Bearer {TOKEN[:-1]}", "token_not_valid"),
    ],
    ids=["no-header", "basic", "wrong", "longer", "shorter"],
)
async def test_metrics_refuse_anything_but_the_token(client, authapi_settings, header, code):
    headers = {"Authorization": header} if header else {}
    with authapi_settings(METRICS_TOKEN=TOKEN):
        response = await client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == code
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "authapi_" not in response.text


async def test_metrics_with_the_token(client, authapi_settings):
    with authapi_settings(METRICS_TOKEN=TOKEN):
        response = await client.get("/metrics", headers=bearer(TOKEN))
        refused = await client.post("/metrics", headers=bearer(TOKEN))
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert response.headers["Cache-Control"] == "no-store"
    found = _samples(response.text)
    assert set(_by(found, "authapi_logins_total", "outcome")) == set(metrics.LOGIN_OUTCOMES)
    assert set(_by(found, "authapi_sessions_revoked_total", "cause")) == set(
        metrics.REVOCATION_CAUSES
    )
    assert refused.status_code == 405 and refused.json()["code"] == "method_not_allowed"


# --- what is counted (in this process) -------------------------------------------------


def test_each_event_counts_once_under_its_label():
    before = _here()
    events.emit_sync("login_failed", user_id=1, reason="account_changed")
    events.emit_sync("login_throttled", retry_after=30)
    events.emit_sync("token_refreshed", user_id=1, session_id="s" * 16, replayed=True)
    events.emit_sync("refresh_failed", reason="invalid", detail="Token is expired")
    events.emit_sync("refresh_failed", user_id=1, reason="revoked")
    events.emit_sync("refresh_failed", user_id=1, reason="user_inactive")
    events.emit_sync("session_revoked", user_id=1, session_id="s" * 16, reason="session_limit")
    events.emit_sync("session_revoked", user_id=1, session_id="s" * 16, reason="something new")
    events.emit_sync("user_sessions_revoked", user_id=1, reason="user_deleted", sessions=3)
    events.emit_sync("user_sessions_revoked", user_id=1, reason="account_changed", sessions=2)
    events.emit_sync("user_sessions_revoked", user_id=1, reason="logout_all", sessions=0)
    after = _here()
    assert _delta(before, after, "authapi_logins_total", "outcome") == {
        "account_changed": 1,
        "throttled": 1,
    }
    assert _delta(before, after, "authapi_refreshes_total", "outcome") == {
        "replay_tolerated": 1,
        "invalid": 1,
        "revoked": 1,
        "user_inactive": 1,
    }
    assert _delta(before, after, "authapi_sessions_revoked_total", "cause") == {
        "eviction": 1,
        "other": 1,  # an unknown reason never becomes a label of its own
        "user_deleted": 3,
        "account_changed": 2,
    }


async def test_store_round_trips_are_timed_and_failures_counted_by_kind():
    @metrics.timed_store
    async def fails(cause: Exception) -> None:
        raise StoreUnavailable() from cause

    @metrics.timed_store
    async def answers() -> str:
        return "PONG"

    before = _here()
    assert await answers() == "PONG"
    for cause in (RedisConnectionError("gone"), RedisTimeoutError("slow"), ValueError("x")):
        with pytest.raises(StoreUnavailable):
            await fails(cause)
    after = _here()
    assert _delta(before, after, "authapi_store_errors_total", "kind") == {
        "connection": 1,
        "timeout": 1,
        "other": 1,
    }
    count = ("authapi_store_duration_seconds_count", ())
    assert after[count] - before.get(count, 0) == 4


async def test_request_durations_are_labelled_by_route_never_by_path():
    app = instrument(django_application)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50020))
    secret_sid = "A" * 22
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        before = _here()
        await c.post("/api/auth/login", json={"username": "nobody-at-all", "password": "x"})
        await c.delete(f"/api/auth/sessions/{secret_sid}")
        await c.get("/no/such/path/at/all")
        await c.request("BREW", "/health")
        after = _here()
    name = "authapi_http_request_duration_seconds_count"
    grown = {
        labels: value - before.get((n, labels), 0)
        for (n, labels), value in after.items()
        if n == name and value != before.get((n, labels))
    }
    assert grown == {
        (("method", "POST"), ("route", "/api/auth/login"), ("status", "401")): 1,
        (("method", "DELETE"), ("route", "/api/auth/sessions/<sid>"), ("status", "401")): 1,
        (("method", "GET"), ("route", "unmatched"), ("status", "404")): 1,
        (("method", "other"), ("route", "/health"), ("status", "405")): 1,
    }
    assert secret_sid not in metrics.render().decode()
    assert after[("authapi_http_requests_in_progress", ())] == before.get(
        ("authapi_http_requests_in_progress", ()), 0
    )


async def test_throttled_logins_are_counted(client, user, authapi_settings):
    with authapi_settings(LOGIN_RATE="1/min"):
        before = _here()
        for status in (401, 429):
            wrong = {"username": user.username, "password": "wrong"}
            assert (await client.post("/api/auth/login", json=wrong)).status_code == status
        after = _here()
    delta = _delta(before, after, "authapi_logins_total", "outcome")
    assert delta == {"bad_credentials": 1, "throttled": 1}


async def test_failed_refreshes_are_counted(client, user):
    pair = await login(client, user)
    await client.post("/api/auth/logout", json={"refresh": pair["refresh"]})
    before = _here()
    assert (await client.post("/api/auth/refresh", json={"refresh": "x.y.z"})).status_code == 401
    gone = await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
    assert gone.status_code == 401
    after = _here()
    delta = _delta(before, after, "authapi_refreshes_total", "outcome")
    assert delta == {"invalid": 1, "revoked": 1}


async def test_every_store_call_is_timed(client, user):
    before = _here()
    await login(client, user)
    after = _here()
    count = ("authapi_store_duration_seconds_count", ())
    assert after[count] > before.get(count, 0)


# --- two workers --------------------------------------------------------------------------


def _per_worker_logins(folder: Path) -> dict[int, float]:
    """Successful logins each worker counted, from its own file."""
    counts = {}
    for path in folder.glob("counter_*.db"):
        found = MultiProcessCollector.merge([str(path)], accumulate=True)
        total = sum(
            s.value
            for family in found
            for s in family.samples
            if s.name == "authapi_logins_total" and s.labels.get("outcome") == "ok"
        )
        counts[int(path.stem.rpartition("_")[2])] = total
    return counts


def _children(parent: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == parent:
                found.add(int(entry.name))
    return found


async def _scrape(base: str) -> str:
    async with httpx.AsyncClient(base_url=base) as c:
        response = await c.get("/metrics", headers=bearer(TOKEN))
    assert response.status_code == 200, response.text
    return response.text


def _sid(token: str) -> str:
    return jwt.decode(token, options={"verify_signature": False})["sid"]


async def _known_flow(base: str, make_user) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Run a flow with known outcomes; return the counts it must leave, and every token."""
    tokens: list[str] = []
    fresh = httpx.Limits(max_keepalive_connections=0)  # a new connection, any worker
    async with httpx.AsyncClient(base_url=base, limits=fresh) as c:

        async def signin(user, password: str = PASSWORD) -> dict:
            pair = await login(c, user, password)
            tokens.extend([pair["access"], pair["refresh"]])
            return pair

        async def refresh(token: str) -> httpx.Response:
            response = await c.post("/api/auth/refresh", json={"refresh": token})
            if response.status_code == 200:
                tokens.extend([response.json()["access"], response.json()["refresh"]])
            return response

        alice, bob, dave, erin, fay, hank = [await make_user() for _ in range(6)]
        a1, a2, a3 = await asyncio.gather(*(signin(alice) for _ in range(3)))
        for _ in range(2):
            wrong = {"username": bob.username, "password": "not-the-password"}
            assert (await c.post("/api/auth/login", json=wrong)).status_code == 401
        first = await refresh(a1["refresh"])  # ok
        assert first.status_code == 200
        assert (await refresh(a1["refresh"])).status_code == 200  # replay, tolerated
        assert (await refresh(first.json()["refresh"])).status_code == 200  # ok
        assert (await refresh(a1["refresh"])).status_code == 401  # reuse: session ends
        for pair in (a2, a3):
            logout = await c.post("/api/auth/logout", json={"refresh": pair["refresh"]})
            assert logout.status_code == 204
        f1, f2 = await signin(fay), await signin(fay)
        deleted = await c.delete(
            f"/api/auth/sessions/{_sid(f1['access'])}", headers=bearer(f2["access"])
        )
        assert deleted.status_code == 204
        everywhere = await c.post("/api/auth/logout-all", headers=bearer(f2["access"]))
        assert everywhere.status_code == 204
        d1, e1 = await signin(dave), await signin(erin)
        model = get_user_model()
        await model.objects.filter(pk=dave.pk).aupdate(password=make_password("changed-pass"))
        await model.objects.filter(pk=erin.pk).aupdate(is_active=False)
        assert (await refresh(d1["refresh"])).status_code == 401  # password changed
        assert (await refresh(e1["refresh"])).status_code == 401  # deactivated
        for _ in range(4):  # AUTHAPI_MAX_SESSIONS_PER_USER=3: the fourth evicts the first
            await signin(hank)
    expected = {
        "authapi_logins_total": {"ok": 11, "bad_credentials": 2, "throttled": 0},
        "authapi_refreshes_total": {
            "ok": 2,
            "replay_tolerated": 1,
            "reuse_detected": 1,
            "password_changed": 1,
            "invalid": 0,
            "user_inactive": 1,
        },
        "authapi_sessions_revoked_total": {
            "reuse": 1,
            "logout": 2,
            "session_deleted": 1,
            "logout_all": 1,
            "password_changed": 1,
            "deactivated": 1,
            "eviction": 1,
            "user_deleted": 0,
            "admin": 0,
            "other": 0,
        },
    }
    return expected, tokens


def _assert_counts(text: str, expected: dict[str, dict[str, int]]) -> None:
    found = _samples(text)
    for name, values in expected.items():
        label = "cause" if name == "authapi_sessions_revoked_total" else "outcome"
        counted = _by(found, name, label)
        assert {k: counted.get(k) for k in values} == values, name


async def test_counts_add_up_across_two_workers_a_killed_worker_and_a_restart(make_user, tmp_path):
    data = tmp_path / "data"
    env = {
        "AUTHAPI_METRICS_TOKEN": TOKEN,
        "AUTHAPI_DATA_DIR": str(data),
        "PROMETHEUS_MULTIPROC_DIR": "",  # unset: the service's own folder in its data dir
        "AUTHAPI_REFRESH_REUSE_INTERVAL": "30",
        "AUTHAPI_MAX_SESSIONS_PER_USER": "3",
    }
    folder = data / "metrics"
    with LiveServer("--workers", "2", env=env) as server:
        assert server.process is not None
        supervisor = server.process.pid
        expected, tokens = await _known_flow(server.url, make_user)
        # Both workers must have served: more logins, on fresh connections, until they did.
        spare = await make_user()
        fresh = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server.url, limits=fresh) as c:
            for _ in range(50):
                if len([n for n in _per_worker_logins(folder).values() if n]) >= 2:
                    break
                pairs = await asyncio.gather(*(login(c, spare) for _ in range(5)))
                # The five race for the cap, so any of them may be evicted; a sixth login
                # after them is the newest and survives to end the rest.
                last = await login(c, spare)
                tokens.extend(t for p in [*pairs, last] for t in (p["access"], p["refresh"]))
                answer = await c.post("/api/auth/logout-all", headers=bearer(last["access"]))
                assert answer.status_code == 204, answer.text
                expected["authapi_logins_total"]["ok"] += 6  # 3 sessions at most: 3 evicted
                expected["authapi_sessions_revoked_total"]["eviction"] += 3
                expected["authapi_sessions_revoked_total"]["logout_all"] += 3
        workers = [pid for pid, n in _per_worker_logins(folder).items() if n]
        assert len(workers) == 2
        assert (folder.stat().st_mode & 0o777) == 0o700
        text = await _scrape(server.url)
        _assert_counts(text, expected)
        for secret in [TOKEN, PASSWORD, *tokens, *(p for t in tokens for p in t.split("."))]:
            assert secret not in text

        # A worker killed outright: uvicorn starts another, which joins the same files.
        victim = workers[0]
        assert victim in _children(supervisor)  # ours to kill
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            started = set(_per_worker_logins(folder)) - set(workers)
            if started & _children(supervisor):
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("uvicorn did not replace the killed worker")
        assert (folder / f"gauge_livesum_{victim}.db").exists()
        text = await _scrape(server.url)
        _assert_counts(text, expected)  # the dead worker's counts are still counted
        assert not (folder / f"gauge_livesum_{victim}.db").exists()  # its live gauge is not

    # The next run starts from zero: its first worker clears the last run's files.
    with LiveServer(env=env) as server:
        text = await _scrape(server.url)
    found = _samples(text)
    assert sum(_by(found, "authapi_logins_total", "outcome").values()) == 0
    assert sum(_by(found, "authapi_sessions_revoked_total", "cause").values()) == 0


async def test_an_operator_folder_is_used_as_given(make_user, tmp_path):
    given = tmp_path / "prom"
    given.mkdir()
    (given / "left-by-the-operator").write_text("")  # theirs to clear, not ours
    env = {
        "AUTHAPI_METRICS_TOKEN": TOKEN,
        "AUTHAPI_DATA_DIR": str(tmp_path / "data"),
        "PROMETHEUS_MULTIPROC_DIR": str(given),
    }
    user = await make_user()
    with LiveServer(env=env) as server:
        async with httpx.AsyncClient(base_url=server.url) as c:
            await login(c, user)
        text = await _scrape(server.url)
    assert (given / "left-by-the-operator").exists()
    assert list(given.glob("counter_*.db"))
    assert not (tmp_path / "data" / "metrics").exists()
    assert _by(_samples(text), "authapi_logins_total", "outcome")["ok"] == 1


def test_importing_the_app_changes_nothing_outside_it(tmp_path):
    """django.setup() (apps.ready, the URLconf, the metrics module) writes no environment
    variable and no file; the metrics folder appears when the server starts counting."""
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    script = """
import json, os, sys
before = dict(os.environ)
import django
django.setup()
import authapi.urls, authapi.metrics, authapi.events, authapi.api  # everything a request loads
from django.core.management import call_command
call_command("check", verbosity=0)
after_setup = dict(os.environ)
folder = os.listdir(os.environ["AUTHAPI_DATA_DIR"])
getattr(authapi.metrics, "start", lambda: None)()
started = os.listdir(os.environ["AUTHAPI_DATA_DIR"])
print(json.dumps([before == after_setup, folder, started, before == dict(os.environ)]))
"""
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "PROMETHEUS_MULTIPROC_DIR" and not key.startswith("AUTHAPI_")
    }
    env["AUTHAPI_DATA_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    same_after_setup, folder, started, same_after_start = json.loads(done.stdout.splitlines()[-1])
    assert same_after_setup and folder == []
    assert started == ["metrics"] and same_after_start  # counted there, without os.environ

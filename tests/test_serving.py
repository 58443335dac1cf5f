"""Serving: no OS thread started per request, the API through its own lean middleware,
the admin through Django's stock stack, and Django's own deploy checks unsilenced."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import httpx
from asgiref import sync
from django.test import override_settings

from tests.conftest import PASSWORD, ROOT, bearer, login


@contextlib.contextmanager
def thread_starts() -> Iterator[list[str]]:
    """The names of the threads started inside the block."""
    started: list[str] = []
    original = threading.Thread.start

    def counting(self):
        started.append(self.name)
        return original(self)

    threading.Thread.start = counting  # type: ignore[method-assign]
    try:
        yield started
    finally:
        threading.Thread.start = original  # type: ignore[method-assign]


async def test_an_authenticated_api_request_takes_no_thread_hop(client, user):
    import asyncio

    pair = await login(client, user)
    calls = []
    original = sync.SyncToAsync.__call__
    loop = asyncio.get_running_loop()
    run_in_executor = loop.run_in_executor

    async def counting(self, *args, **kwargs):
        calls.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await original(self, *args, **kwargs)

    def submitted(executor, func, *args):
        calls.append(f"run_in_executor({func!r})")
        return run_in_executor(executor, func, *args)

    sync.SyncToAsync.__call__ = counting  # type: ignore[method-assign]
    loop.run_in_executor = submitted  # type: ignore[method-assign,assignment]
    try:
        for _ in range(5):
            response = await client.get("/demo/async", headers=bearer(pair["access"]))
            assert response.status_code == 200
    finally:
        sync.SyncToAsync.__call__ = original  # type: ignore[method-assign]
        del loop.run_in_executor
    # no request signal receiver, no middleware, no auth, not even closing the response
    assert calls == []


async def test_a_projects_own_sync_receiver_still_runs_on_the_requests_thread(client, user):
    from django.core.signals import request_finished

    pair = await login(client, user)
    seen: list[tuple[str, bool]] = []

    def receiver(**kwargs):
        import asyncio

        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        seen.append((threading.current_thread().name, on_loop))

    request_finished.connect(receiver)
    try:
        response = await client.get("/demo/async", headers=bearer(pair["access"]))
        assert response.status_code == 200
    finally:
        request_finished.disconnect(receiver)
    assert len(seen) == 1
    name, on_loop = seen[0]
    assert not on_loop and name.startswith("authapi-sync")


async def test_no_thread_is_started_per_request(client, user):
    pair = await login(client, user)
    for _ in range(3):  # warm up: the pool makes its threads once
        await client.get("/demo/sync", headers=bearer(pair["access"]))
    with thread_starts() as started:
        for _ in range(20):  # /demo/sync is sync work on a lent thread; /me none at all
            response = await client.get("/api/auth/me", headers=bearer(pair["access"]))
            assert response.status_code == 200
            assert (
                await client.get("/demo/sync", headers=bearer(pair["access"]))
            ).status_code == 200
    assert started == []


async def test_database_connections_outlive_requests(client, user):
    from django.db.backends.signals import connection_created

    pair = await login(client, user)
    for _ in range(3):  # warm up: each lent thread opens its connection once
        await client.get("/demo/user", headers=bearer(pair["access"]))
    opened = []

    def count(sender, connection, **kwargs):
        opened.append(threading.current_thread().name)

    connection_created.connect(count)
    try:
        for _ in range(10):  # one request at a time: the same lent thread, its connection
            response = await client.get("/demo/user", headers=bearer(pair["access"]))
            assert response.status_code == 200  # auser(): one query each time
    finally:
        connection_created.disconnect(count)
    assert opened == []


async def test_a_stock_paths_connection_is_closed_with_its_thread(client):
    """Django's handler (a host's view) runs its sync work on a thread that ends with the
    request: the connection opened there is closed then, not left to the garbage collector
    (which psycopg reports as a ResourceWarning) however long CONN_MAX_AGE is."""
    from tests.urls import STOCK_CONNECTIONS

    STOCK_CONNECTIONS.clear()
    for _ in range(3):
        response = await client.get("/stock-query")
        assert response.status_code == 200
    assert len(STOCK_CONNECTIONS) == 3
    assert all(c.connection is None for c in STOCK_CONNECTIONS)  # type: ignore[attr-defined]
    STOCK_CONNECTIONS.clear()


async def test_an_unknown_host_is_refused_as_json(client):
    response = await client.get("/api/auth/me", headers={"Host": "evil.example"})
    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_https_mode_redirects_and_sends_hsts():
    from authapi.asgi.serving import api_handler

    https = dict(
        SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
        SECURE_SSL_REDIRECT=True,
        SECURE_REDIRECT_EXEMPT=[r"^health$"],
        SECURE_HSTS_SECONDS=31536000,
    )
    with override_settings(**https):
        lean: Any = api_handler()
        transport = httpx.ASGITransport(app=lean, client=("127.0.0.1", 50011))
        client = httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")
        plain = await client.get("/api/auth/me")
        assert plain.status_code == 301
        assert plain.headers["Location"] == "https://127.0.0.1/api/auth/me"
        assert (await client.get("/health")).status_code == 200  # probes stay on http
        secure = await client.get("/api/auth/me", headers={"X-Forwarded-Proto": "https"})
        assert secure.status_code == 401
        assert secure.headers["Strict-Transport-Security"].startswith("max-age=31536000")
        await client.aclose()


async def test_the_app_works_without_the_fast_path(user):
    """serve() is a speed-up: Django's own handler and stock middleware serve the contract."""
    from django.core.asgi import get_asgi_application

    plain: Any = get_asgi_application()
    transport = httpx.ASGITransport(app=plain, client=("127.0.0.1", 50010))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        pair = await login(http, user)
        me = await http.get("/api/auth/me", headers=bearer(pair["access"]))
        assert me.status_code == 200 and me.json()["username"] == user.username
        turned = await http.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
        assert turned.status_code == 200
        replay = await http.post("/api/auth/refresh", json={"refresh": pair["refresh"]})
        assert replay.status_code == 401
        bad = await http.get("/api/auth/me", headers=bearer("nonsense"))
        assert bad.status_code == 401 and bad.json()["code"] == "token_not_valid"


async def test_security_headers_are_still_set(client, user):
    pair = await login(client, user)
    response = await client.get("/api/auth/me", headers=bearer(pair["access"]))
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"


async def test_the_admin_logs_in_with_session_and_csrf(make_user):
    from project.asgi import application

    staff = await make_user(is_staff=True, is_superuser=True)
    transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 50003))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as browser:
        page = await browser.get("/admin/login/")
        assert page.status_code == 200 and "csrfmiddlewaretoken" in page.text
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert found is not None
        token = found[1]
        form = {"username": staff.username, "password": PASSWORD, "next": "/admin/"}
        forged = await browser.post("/admin/login/", data=form)  # no CSRF token
        assert forged.status_code == 403
        assert forged.json()["code"] == "permission_denied"
        done = await browser.post("/admin/login/", data={**form, "csrfmiddlewaretoken": token})
        assert done.status_code == 302 and done.headers["Location"] == "/admin/"
        index = await browser.get("/admin/")
        assert index.status_code == 200 and "Site administration" in index.text
        assert index.headers["X-Frame-Options"] == "DENY"


def _check_deploy(**env_vars: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHAPI_", "DJANGO_"))}
    env.update(DJANGO_SETTINGS_MODULE="project.settings",
               AUTHAPI_DATA_DIR=tempfile.mkdtemp(prefix="authapi-deploy-"), **env_vars)  # fmt: skip
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_django_deploy_checks_run_unsilenced():
    result = _check_deploy()
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for expected in ("security.W004", "security.W008", "security.W016", "authapi.W001"):
        assert expected in output, output
    assert "silenced" not in output or "(0 silenced)" in output, output


def test_the_documented_production_environment_passes_check_deploy():
    result = _check_deploy(
        DJANGO_HTTPS="1",
        DJANGO_SECRET_KEY="k" * 20 + "-production-secret-" + "z9" * 20,
        DJANGO_ALLOWED_HOSTS="auth.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


# --- the API handler over raw ASGI: bodies, disconnects, streams ---------------------------


def _scope(path: str, method: str = "GET", headers=(), query: bytes = b"") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 50020),
        "server": ("127.0.0.1", 80),
    }


async def _call(app, scope, messages, *, timeout: float = 10.0):
    """Run ``app`` with ``messages`` as what the client sends (then, for ever, nothing):
    return what it sent back."""
    import asyncio

    pending = list(messages)
    sent: list[dict[str, Any]] = []

    async def receive():
        if pending:
            item = pending.pop(0)
            if isinstance(item, float):
                await asyncio.sleep(item)
                return {"type": "http.disconnect"}
            return item
        await asyncio.Event().wait()  # a client that sends nothing more

    async def send(message):
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), timeout)
    return sent


def _answer_of(sent) -> tuple[int, dict[bytes, bytes], bytes]:
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.lower(): v for k, v in start["headers"]}, body


async def test_a_body_over_the_limit_is_refused_by_the_handler_itself():
    """Without RequestLimits in front (a project mounting the handler alone), a chunked
    body past 16 KiB is refused as JSON once it passes the limit; the rest is never read."""
    import json

    from authapi.asgi.serving import api_handler

    chunk = {"type": "http.request", "body": b"x" * 4096, "more_body": True}
    scope = _scope(
        "/api/auth/login",
        "POST",
        [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
    )
    sent = await _call(api_handler(), scope, [chunk] * 5)  # then nothing: never read on
    status, headers, body = _answer_of(sent)
    assert status == 413
    assert json.loads(body)["code"] == "payload_too_large"
    assert headers[b"x-content-type-options"] == b"nosniff"


async def test_a_query_string_that_is_not_utf8_is_a_json_400():
    import json

    from authapi.asgi.serving import api_handler

    scope = _scope("/api/auth/me", query=b"a=%ff\xff")
    sent = await _call(api_handler(), scope, [{"type": "http.request", "body": b""}])
    status, _, body = _answer_of(sent)
    assert status == 400 and json.loads(body)["code"] == "bad_request"


async def test_a_client_gone_before_its_body_gets_nothing_and_costs_nothing():
    from project.asgi import application

    scope = _scope("/api/auth/login", "POST", [(b"content-length", b"100")])
    partial = {"type": "http.request", "body": b"{", "more_body": True}
    assert await _call(application, scope, [partial, 0.0]) == []


async def test_an_endless_stream_ends_when_its_client_goes(client, user):
    from project.asgi import application
    from tests import urls

    pair = await login(client, user)
    urls.STREAM_CLOSED.clear()
    scope = _scope(
        "/demo/stream", headers=[(b"authorization", f"Bearer {pair['access']}".encode())]
    )
    sent = await _call(application, scope, [{"type": "http.request", "body": b""}, 0.2])
    status, headers, body = _answer_of(sent)
    assert status == 200 and headers[b"content-type"] == b"text/event-stream"
    assert body.startswith(b"data: tick\n\n")
    assert urls.STREAM_CLOSED == [True]  # the generator was closed, not left running


async def test_a_buffered_answers_resource_closers_run():
    from project.asgi import application
    from tests import urls

    urls.CLOSERS.clear()
    sent = await _call(application, _scope("/file-like"), [{"type": "http.request"}])
    assert _answer_of(sent)[:1] == (200,) and _answer_of(sent)[2] == b"from a file"
    assert [source.closed for source in urls.CLOSERS] == [True]


async def test_a_view_that_swallows_the_disconnect_leaves_no_cancellation_pending():
    import asyncio

    from project.asgi import application
    from tests import urls

    urls.SWALLOWED.clear()
    task = asyncio.ensure_future(
        _call(application, _scope("/swallowing"), [{"type": "http.request"}, 0.05])
    )
    await asyncio.wait_for(task, 10)
    assert urls.SWALLOWED == [True]
    assert task.cancelling() == 0  # a later TaskGroup or timeout in the task still works


async def test_more_sync_requests_than_threads_wait_and_loop_only_ones_do_not(client, user):
    """Every thread may be held (slow sync views here; a stalled database is alike): the
    requests that need one wait their turn, no thread is started for them, and those that
    need none (the access check, token verification) answer meanwhile. (/health waits: it asks the
    database.)"""
    import asyncio

    from authapi.asgi import threads as sync_threads

    pair = await login(client, user)
    auth = bearer(pair["access"])
    size = sync_threads._pools[-1].size
    await asyncio.gather(*(client.get("/demo/sync-slow", headers=auth) for _ in range(size)))
    with thread_starts() as started:
        slow = [
            asyncio.ensure_future(client.get("/demo/sync-slow", headers=auth))
            for _ in range(size + 2)
        ]
        await asyncio.sleep(0.1)  # every thread is held now, two requests wait
        quick = await client.get("/demo/async", headers=auth)
        keys = await client.post("/api/auth/verify", json={"token": pair["access"]})
        still_held = [not request.done() for request in slow]
        answers = await asyncio.wait_for(asyncio.gather(*slow), 20)
    assert quick.status_code == 200 and keys.status_code == 200
    assert all(still_held)  # answered while the slow ones held every thread
    assert [a.status_code for a in answers] == [200] * (size + 2)
    assert started == []


async def test_the_admin_is_still_the_admin_under_a_root_path():
    """uvicorn --root-path puts the prefix into "path": /auth/admin/ is the admin's (its
    HTML login page), not the API's."""
    from project.asgi import application

    scope = _scope("/auth/admin/login/")
    scope["root_path"] = "/auth"
    sent = await _call(application, scope, [{"type": "http.request"}])
    status, headers, body = _answer_of(sent)
    assert status == 200 and b"csrfmiddlewaretoken" in body
    assert headers[b"content-type"].startswith(b"text/html")


def test_a_thread_idle_for_a_while_is_tidied_before_it_is_lent(monkeypatch):
    from authapi.asgi import threads as sync_threads

    order: list[str] = []
    monkeypatch.setattr(sync_threads, "tidy", lambda: order.append("tidy"))
    pool = sync_threads.SyncThreads(2)

    def drained() -> list[str]:  # what the idle thread has done once its queue is empty
        pool._idle[0].submit(lambda: None).result(5)
        return order

    lent = pool.lend()
    lent.submit(order.append, "first request").result(5)
    lent.release()  # tidied after use
    again = pool.lend()
    again.submit(order.append, "soon after").result(5)
    again.release()
    assert drained() == ["first request", "tidy", "soon after", "tidy"]
    pool._idle[0].idle_since -= sync_threads.IDLE_TIDY  # as if it had waited that long
    late = pool.lend()
    late.submit(order.append, "after a pause").result(5)
    late.release()
    assert drained()[4:] == ["tidy", "after a pause", "tidy"]  # its connections checked first
    assert len({id(t) for t in pool._idle}) == 1  # one thread served all three


def test_a_call_that_finds_every_thread_out_runs_on_the_next_one_given_back():
    from authapi.asgi import threads as sync_threads

    pool = sync_threads.SyncThreads(1)
    first, second, third = pool.lend(), pool.lend(), pool.lend()
    held = first.submit(threading.get_ident).result(5)
    queued = second.submit(threading.get_ident)
    gave_up = third.submit(threading.get_ident)
    assert not queued.done() and not gave_up.done()  # queued, not run, no new thread
    third.release()  # that request ended while it waited (its client left)
    assert gave_up.cancelled()
    first.release()
    assert queued.result(5) == held  # the same one thread, handed over
    second.release()
    assert len(pool._idle) == 1 and pool._made == 1


def test_long_paths_are_routed_without_being_kept():
    """Ownership is cached per path, but a client's long paths never fill the cache."""
    from authapi.asgi import serving

    scope = {"type": "http", "path": "/api/auth/" + "x" * 5000, "root_path": ""}
    before = serving._resolves_to.cache_info().currsize
    for i in range(50):
        scope["path"] = f"/{i}/" + "y" * 5000
        assert not serving.owner(scope, frozenset({serving.NAMESPACE}))
    assert serving._resolves_to.cache_info().currsize == before
    assert serving.owner({"path": "/api/auth/me", "root_path": ""}, frozenset({"authapi"}))

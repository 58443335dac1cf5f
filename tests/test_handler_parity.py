"""Django's own ASGIHandler and the lean handler, side by side on the same views: what
reaches the client must be the same (Set-Cookie in the running Django's own encoding,
streams, files, HEAD, the script prefix and uvicorn's --root-path, a client that goes
away, the request signals). Run on each supported Django line (5.2 and 6.1)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from django.core import signals
from django.core.handlers.asgi import ASGIHandler
from django.test import override_settings

from tests import parity_urls

# Django warns when an async server consumes a sync iterator: both handlers do, on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume")


@pytest.fixture(scope="module")
def apps() -> Iterator[dict[str, Any]]:
    from authapi.asgi.serving import serve

    with override_settings(ROOT_URLCONF="tests.parity_urls"):
        yield {
            "django": ASGIHandler(),
            "lean": serve(ASGIHandler(), apis=[parity_urls.parity]),
        }


KINDS = ["django", "lean"]


def _scope(path: str, method: str = "GET", root_path: str = "") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": root_path + path,
        "raw_path": (root_path + path).encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }


async def _call(app: Any, scope: dict[str, Any], disconnect_after: float | None = None):
    sent: list[dict[str, Any]] = []
    first = True

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b""}
        if disconnect_after is not None:
            await asyncio.sleep(disconnect_after)
            return {"type": "http.disconnect"}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with override_settings(ROOT_URLCONF="tests.parity_urls"):
        await asyncio.wait_for(app(scope, receive, send), 10)
    return sent


def _answer(sent: list[dict[str, Any]]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert sent[-1]["type"] == "http.response.body" and not sent[-1].get("more_body", False)
    return start["status"], start["headers"], body


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [value for key, value in headers if key.lower() == name]


async def _both(apps: dict[str, Any], *args: Any, **kwargs: Any):
    return [_answer(await _call(apps[kind], *args, **kwargs)) for kind in KINDS]


async def test_the_lean_path_is_taken(apps):
    """The comparison compares two handlers: the lean one serves the handed API."""
    from authapi.asgi.handler import APIHandler

    seen: list[Any] = []

    def note(sender: Any, **kwargs: Any) -> None:
        seen.append(sender)

    signals.request_started.connect(note)
    try:
        for kind in KINDS:
            await _call(apps[kind], _scope("/parity/cookies"))
    finally:
        signals.request_started.disconnect(note)
    assert seen == [ASGIHandler, APIHandler]


async def test_cookies_are_encoded_as_the_running_django_does(apps):
    (s1, h1, b1), (s2, h2, b2) = await _both(apps, _scope("/parity/cookies"))
    assert (s1, b1) == (s2, b2) == (200, b"cookies")
    cookies = _header(h1, b"set-cookie")
    assert len(cookies) == 4 and cookies == _header(h2, b"set-cookie")


@pytest.mark.parametrize("path", ["/parity/stream", "/parity/astream", "/parity/file"])
async def test_streams_and_files_arrive_the_same(apps, path):
    (s1, h1, b1), (s2, h2, b2) = await _both(apps, _scope(path))
    assert s1 == s2 == 200 and b1 == b2 and len(b1) > 0
    for name in (b"content-type", b"content-length", b"content-disposition"):
        assert _header(h1, name) == _header(h2, name), name


async def test_a_file_response_is_sent_in_djangos_block_size(apps):
    sizes = {}
    for kind in KINDS:
        sent = await _call(apps[kind], _scope("/parity/file"))
        sizes[kind] = [len(m.get("body", b"")) for m in sent if m["type"] == "http.response.body"]
    assert sizes["django"] == sizes["lean"]
    assert max(sizes["lean"]) == ASGIHandler.chunk_size


async def test_head_is_answered_the_same(apps):
    (s1, h1, b1), (s2, h2, b2) = await _both(apps, _scope("/parity/cookies", "HEAD"))
    assert (s1, b1) == (s2, b2)
    assert _header(h1, b"set-cookie") == _header(h2, b"set-cookie")


@pytest.mark.parametrize(
    "root_path,force",
    [("", None), ("/mounted", None), ("/mounted/", None), ("", "/forced"), ("/mounted", "/forced")],
)
async def test_the_script_prefix_and_root_path_read_the_same(apps, root_path, force):
    import json

    with override_settings(FORCE_SCRIPT_NAME=force):
        answers = await _both(apps, _scope("/parity/where", root_path=root_path.rstrip("/")))
    (s1, _, b1), (s2, _, b2) = answers
    assert (s1, b1) == (s2, b2)
    if s1 == 200:  # (a forced prefix the path lacks: a 404 from both)
        assert json.loads(b1)["reversed"].endswith("/parity/where")


async def test_a_client_that_goes_away_ends_the_stream_the_same(apps):
    for kind in KINDS:
        parity_urls.closed.clear()
        sent = await _call(apps[kind], _scope("/parity/endless"), disconnect_after=0.1)
        assert sent[0]["type"] == "http.response.start"
        assert parity_urls.closed == ["endless"], kind  # the generator was closed


async def test_the_request_signals_reach_a_projects_receivers_the_same(apps):
    events: dict[str, list[str]] = {kind: [] for kind in KINDS}
    current: list[str] = []

    def started(sender: Any, **kwargs: Any) -> None:
        events[current[0]].append("started")

    async def finished(sender: Any, **kwargs: Any) -> None:
        events[current[0]].append("finished")

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    try:
        for kind in KINDS:
            current[:] = [kind]
            for path in ("/parity/cookies", "/parity/stream", "/parity/file"):
                await _call(apps[kind], _scope(path))
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)
    assert events["django"] == events["lean"] == ["started", "finished"] * 3


def test_djangos_own_receivers_stay_connected_for_every_sender(apps):
    """serve() takes no receiver of Django's off: a subclass of ASGIHandler (any
    sender) still gets connections closed and queries reset."""
    from django.core.cache import close_caches
    from django.core.handlers.base import reset_urlconf
    from django.db import close_old_connections, reset_queries

    class Subclass(ASGIHandler):
        pass

    def live(signal: Any) -> set[Any]:
        sync_receivers, async_receivers = signal._live_receivers(Subclass)
        return {*sync_receivers, *async_receivers}

    assert {close_old_connections, reset_queries} <= live(signals.request_started)
    assert {close_old_connections, close_caches, reset_urlconf} <= live(signals.request_finished)

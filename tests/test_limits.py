"""authapi/asgi/limits.py: bodies refused before they are read, slow bodies cut, and the
documented uvicorn launch bounding headers, over a real socket."""

from __future__ import annotations

import asyncio
import json
import select
import shlex
import socket
import time
from collections.abc import MutableMapping, Sequence
from typing import Any

import httpx
import pytest
from django.test import override_settings
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from authapi.asgi import limits
from authapi.asgi.limits import RequestLimits
from authapi.errors import MAX_BODY
from project.asgi import application
from tests.conftest import ROOT, LiveServer

MB = 1024 * 1024
CHUNK = 8 * 1024
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "cache-control": "no-store",
}


class Exchange:
    """One request to an ASGI app: a receive that counts the body bytes it hands out and
    a send that records the answer. After the body, receive waits for the response to
    finish (as uvicorn does), or for ``disconnect_after``, then reports a disconnect."""

    def __init__(
        self,
        body: bytes = b"",
        *,
        size: int | None = None,
        disconnect_after: asyncio.Event | None = None,
    ) -> None:
        self.body = body
        self.size = len(body) if size is None else size
        self.disconnect_after = disconnect_after
        self.pulled = 0
        self.receive_calls = 0
        self.body_done = False
        self.messages: list[MutableMapping[str, Any]] = []
        self.finished = asyncio.Event()
        self._filler = b"x" * CHUNK

    async def receive(self) -> dict:
        self.receive_calls += 1
        if not self.body_done:
            n = min(CHUNK, self.size - self.pulled)
            chunk = self.body[self.pulled : self.pulled + n] if self.body else self._filler[:n]
            self.pulled += n
            self.body_done = self.pulled >= self.size
            return {"type": "http.request", "body": chunk, "more_body": not self.body_done}
        await (self.disconnect_after or self.finished).wait()
        return {"type": "http.disconnect"}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            self.finished.set()

    @property
    def status(self) -> int | None:
        starts = [m for m in self.messages if m["type"] == "http.response.start"]
        return starts[0]["status"] if starts else None

    @property
    def headers(self) -> dict[str, str]:
        start = next(m for m in self.messages if m["type"] == "http.response.start")
        return {k.decode().lower(): v.decode() for k, v in start["headers"]}

    def json(self) -> dict:
        return json.loads(b"".join(m.get("body", b"") for m in self.messages[1:]))


def scope(method: str, path: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }


async def run(exchange: Exchange, request: dict, app=application) -> Exchange:
    await asyncio.wait_for(app(request, exchange.receive, exchange.send), timeout=30)
    return exchange


def declared(length: int | bytes) -> list[tuple[bytes, bytes]]:
    value = length if isinstance(length, bytes) else str(length).encode()
    return [(b"content-type", b"application/json"), (b"content-length", value)]


CHUNKED = [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]


def verify_body(size: int) -> bytes:
    """A JSON body for /api/auth/verify padded with spaces to exactly ``size`` bytes."""
    body = b'{"token": "x"}'
    return body + b" " * (size - len(body))


def assert_refused(exchange: Exchange, status: int, code: str) -> None:
    assert exchange.status == status
    assert exchange.headers["content-type"] == "application/json"
    assert exchange.headers["connection"] == "close"
    assert exchange.json()["code"] == code
    assert isinstance(exchange.json()["detail"], str)


async def test_chunked_200_mb_body_is_refused_after_16k_and_one_chunk():
    exchange = await run(Exchange(size=200 * MB), scope("POST", "/api/auth/login", CHUNKED))
    assert_refused(exchange, 413, "payload_too_large")
    assert exchange.pulled <= MAX_BODY + CHUNK
    assert exchange.receive_calls == exchange.pulled // CHUNK  # nothing pulled after the 413


async def test_content_length_of_a_gigabyte_is_answered_without_a_receive():
    exchange = await run(Exchange(size=10**9), scope("POST", "/api/auth/login", declared(10**9)))
    assert_refused(exchange, 413, "payload_too_large")
    assert exchange.receive_calls == 0


async def test_content_length_of_five_thousand_digits_is_413_not_a_crash():
    exchange = await run(Exchange(), scope("POST", "/api/auth/login", declared(b"9" * 5000)))
    assert_refused(exchange, 413, "payload_too_large")
    assert exchange.receive_calls == 0


async def test_413_carries_the_error_text_and_the_security_headers():
    exchange = await run(Exchange(), scope("POST", "/api/auth/login", declared(MAX_BODY + 1)))
    assert exchange.json() == {
        "detail": "Request body is larger than 16 KiB.",
        "code": "payload_too_large",
    }
    assert SECURITY_HEADERS.items() <= exchange.headers.items()
    body = b"".join(m.get("body", b"") for m in exchange.messages[1:])
    assert exchange.headers["content-length"] == str(len(body))


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_body_of_exactly_16k_reaches_django(framing):
    headers = declared(MAX_BODY) if framing == "content-length" else CHUNKED
    exchange = await run(
        Exchange(verify_body(MAX_BODY)), scope("POST", "/api/auth/verify", headers)
    )
    assert exchange.status == 401  # read and parsed: the token "x" is not valid
    assert exchange.json()["code"] == "token_not_valid"
    assert exchange.pulled == MAX_BODY


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_body_of_16k_and_one_byte_is_413(framing):
    headers = declared(MAX_BODY + 1) if framing == "content-length" else CHUNKED
    body = verify_body(MAX_BODY + 1)
    exchange = await run(Exchange(body), scope("POST", "/api/auth/verify", headers))
    assert_refused(exchange, 413, "payload_too_large")


async def test_slow_body_is_408(monkeypatch):
    monkeypatch.setattr(limits, "BODY_TIMEOUT", 0.2)
    exchange = Exchange()
    first = True

    async def trickle() -> dict:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b'{"to', "more_body": True}
        await asyncio.Event().wait()  # the rest never comes
        raise AssertionError("unreachable")

    request = scope("POST", "/api/auth/verify", declared(100))
    await asyncio.wait_for(application(request, trickle, exchange.send), timeout=10)
    assert_refused(exchange, 408, "request_timeout")
    assert SECURITY_HEADERS.items() <= exchange.headers.items()


@pytest.mark.parametrize("value", [b"abc", b"-1", b"1.5", b" 12", b"+5", b"", b"0x10"], ids=repr)
async def test_malformed_content_length_is_400(value):
    exchange = await run(Exchange(), scope("POST", "/api/auth/verify", declared(value)))
    assert_refused(exchange, 400, "parse_error")
    assert exchange.receive_calls == 0


async def test_two_different_content_lengths_are_400():
    headers = [(b"content-length", b"5"), (b"content-length", b"6")]
    exchange = await run(Exchange(b"{}   "), scope("POST", "/api/auth/verify", headers))
    assert_refused(exchange, 400, "parse_error")


async def test_too_many_headers_are_431():
    headers = [(b"x-h%d" % i, b"1") for i in range(limits.MAX_HEADERS)]  # and host
    exchange = await run(Exchange(), scope("GET", "/health", headers))
    assert_refused(exchange, 431, "request_header_fields_too_large")


async def test_a_hundred_headers_pass():
    headers = [(b"x-h%d" % i, b"1") for i in range(limits.MAX_HEADERS - 1)]
    exchange = await run(Exchange(), scope("GET", "/health", headers))
    assert exchange.status == 200


async def test_headers_over_16k_are_431():
    headers = [(b"x-big", b"a" * limits.MAX_HEADER_BYTES)]
    exchange = await run(Exchange(), scope("GET", "/health", headers))
    assert_refused(exchange, 431, "request_header_fields_too_large")


@pytest.mark.parametrize("kind", ["http", "websocket", "lifespan"])
async def test_bodyless_requests_and_other_scopes_pass_through_untouched(kind):
    seen = []

    async def inner(scope, receive, send):
        seen.append((scope, receive, send))

    exchange = Exchange()
    receive, send = exchange.receive, exchange.send
    request = scope("GET", "/health") if kind == "http" else {"type": kind}
    await RequestLimits(inner)(request, receive, send)
    assert seen == [(request, receive, send)]
    assert exchange.receive_calls == 0


async def test_get_health_answers_through_the_guard():
    exchange = await run(Exchange(), scope("GET", "/health"))
    assert exchange.status == 200


async def test_lifespan_still_answers():
    import gc

    gc.unfreeze()
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message["type"])

    await asyncio.wait_for(application({"type": "lifespan"}, receive, send), timeout=30)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    # the start-up heap is out of the cyclic collector's way (see authapi.asgi.lifespan)
    assert gc.get_freeze_count() > 10_000


class Hold:
    """What ``hold_view`` (served at /hold by this module as an URLconf) saw."""

    started: asyncio.Event
    seen: list[tuple[str, bytes]]


@csrf_exempt
async def hold_view(request):
    """Reads the body, then waits until cancelled: a view in the middle of its work."""
    Hold.seen.append(("started", request.body))
    Hold.started.set()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        Hold.seen.append(("cancelled", request.body))
        raise
    raise AssertionError("unreachable")


urlpatterns = [path("hold", hold_view)]


async def test_a_disconnect_after_the_replayed_body_cancels_the_django_view():
    Hold.started, Hold.seen = asyncio.Event(), []
    body = b'{"held": true}'
    exchange = Exchange(body, disconnect_after=Hold.started)
    with override_settings(ROOT_URLCONF=__name__):
        await run(exchange, scope("POST", "/hold", declared(len(body))))
    assert Hold.seen == [("started", body), ("cancelled", body)]
    assert exchange.receive_calls == 2  # the body, then Django's listener got the disconnect
    assert exchange.status is None  # nobody left to answer


async def test_django_still_listens_while_the_view_runs():
    body = json.dumps({"token": "x"}).encode()
    exchange = await run(Exchange(body), scope("POST", "/api/auth/verify", declared(len(body))))
    assert exchange.status == 401
    assert exchange.receive_calls == 2  # the listener was waiting on the server's receive


# Over a real socket, against uvicorn launched as scripts/serve launches it.


def documented_flags() -> list[str]:
    """uvicorn's options on scripts/serve's launch line, less host, port and "$@"."""
    text = (ROOT / "scripts" / "serve").read_text().replace("\\\n", " ")
    line = next(x for x in text.splitlines() if "uvicorn project.asgi:application" in x)
    words = shlex.split(line.split("project.asgi:application", 1)[1])
    flags: list[str] = []
    for i, word in enumerate(words):
        if word in ("--host", "--port", "$@") or words[i - 1] in ("--host", "--port"):
            continue
        flags.append(word)
    return flags


FLAGS = documented_flags()


@pytest.fixture(scope="module")
def server():
    with LiveServer(*FLAGS) as live:
        yield live


def _read_response(sock: socket.socket, deadline: float) -> bytes:
    """What the server answered until it closed the connection (a reset ends it too)."""
    data = b""
    sock.setblocking(True)
    sock.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def _post_until_answered(port: int, head: bytes, piece: bytes, total: int) -> tuple[int, bytes]:
    """Send ``head`` then ``piece`` repeatedly up to ``total`` bytes, stopping as soon as
    the server answers; the body bytes the kernel took, and the answer."""
    sock = socket.create_connection(("127.0.0.1", port))
    deadline = time.monotonic() + 60
    try:
        sock.sendall(head)
        sock.setblocking(False)
        sent, pending = 0, b""
        while time.monotonic() < deadline:
            writable = [sock] if sent < total else []
            readable, can_write, _ = select.select([sock], writable, [], 1)
            if readable:
                break
            if can_write:
                pending = pending or piece
                try:
                    n = sock.send(pending)
                except BlockingIOError:
                    continue
                except OSError:  # closed on us: the answer, if any, is in our buffer
                    break
                pending, sent = pending[n:], sent + n
        return sent, _read_response(sock, deadline)
    finally:
        sock.close()


def _parse(reply: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_200_mb_body_over_a_socket_is_413_after_a_small_part(server, framing):
    total = 200 * MB
    head = b"POST /api/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    if framing == "chunked":
        head += b"Transfer-Encoding: chunked\r\n\r\n"
        piece = b"10000\r\n" + b"a" * 0x10000 + b"\r\n"
    else:
        head += b"Content-Length: %d\r\n\r\n" % total
        piece = b"a" * 0x10000
    sent, reply = _post_until_answered(server.port, head, piece, total)
    status, headers, body = _parse(reply)
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["code"] == "payload_too_large"
    assert sent < total // 4, f"the client got {sent} bytes out before the answer"
    assert server.process.poll() is None


@pytest.mark.parametrize("pieces", [1, 10], ids=["one-write", "ten-writes"])
def test_100_kb_header_is_refused_and_the_worker_lives(server, pieces):
    # Arriving in pieces, h11 refuses the head once 16 KiB are buffered incomplete (400);
    # read in one go, it reaches the guard, which refuses it (431).
    header = b"a" * 100_000
    sock = socket.create_connection(("127.0.0.1", server.port))
    try:
        try:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
            step = len(header) // pieces
            for i in range(0, len(header), step):
                sock.sendall(header[i : i + step])
                time.sleep(0.02 if pieces > 1 else 0)  # separate reads, mostly
            sock.sendall(b"\r\n\r\n")
        except OSError:
            pass  # the server closed the connection mid-header
        reply = _read_response(sock, time.monotonic() + 10)
    finally:
        sock.close()
    assert reply == b"" or reply.split(b" ", 2)[1] in (b"400", b"431"), reply[:200]
    assert server.process.poll() is None
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200

"""A pure ASGI guard in front of Django: oversized and slow requests are refused before
they cost anything.

Django's ``ASGIHandler`` reads the whole body into a ``SpooledTemporaryFile`` (memory,
then disk) before any middleware runs, so a 200 MB body would be read in full before
``json_errors`` could refuse it. Here a declared ``Content-Length`` over ``MAX_BODY`` is
answered 413 without reading a byte, a chunked body as soon as it passes the limit, and a
body that does not arrive within ``BODY_TIMEOUT`` seconds 408; more than ``MAX_HEADERS``
headers or ``MAX_HEADER_BYTES`` of them 431. Header bytes must first be bounded by the
server, which has buffered them by the time an app runs: scripts/serve runs h11 with
``--h11-max-incomplete-event-size``, which refuses a head still incomplete past 16 KiB but
lets through one that completes within a single socket read (up to 256 KiB): this check
refuses those. Slow headers never reach an app at all: that deadline is the front proxy's.

A request with neither ``Content-Length`` nor ``Transfer-Encoding`` has no body in
HTTP/1.x (RFC 9112, section 6.3) and goes to Django untouched.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from authapi.asgi.types import Message, Receive, Scope, Send
from authapi.errors import MAX_BODY, BadRequest, PayloadTooLarge

BODY_TIMEOUT = 10.0  # seconds for the whole body to arrive
MAX_HEADERS = 100
MAX_HEADER_BYTES = 16 * 1024  # names and values, as h11's limit in scripts/serve
_MAX_DIGITS = len(str(MAX_BODY))

_HEADERS = [  # and the security headers Django adds to its own answers
    (b"content-type", b"application/json"),
    (b"connection", b"close"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


def _error(status: int, code: str, detail: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = json.dumps({"detail": detail, "code": code}).encode()
    return status, [*_HEADERS, (b"content-length", str(len(body)).encode())], body


TOO_LARGE = _error(413, PayloadTooLarge.code, PayloadTooLarge.detail)
BAD_LENGTH = _error(400, BadRequest.code, "Content-Length is not a number.")
TIMEOUT = _error(408, "request_timeout", "The request body did not arrive in time.")
BAD_QUERY = _error(400, "bad_request", "The query string is not UTF-8.")
HEADERS_TOO_LARGE = _error(
    431, "request_header_fields_too_large", "Request headers are too many or too large."
)


async def answer(send: Send, error: tuple[int, list[tuple[bytes, bytes]], bytes]) -> None:
    status, headers, body = error
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestLimits:
    """Wrap an ASGI app: bounded bodies, header counts and body time for ``http`` scopes."""

    __slots__ = ("app",)

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"")
        if query and not query.isascii():
            try:  # Django decodes it before any middleware, and answers an HTML 400
                query.decode()
            except UnicodeDecodeError:
                await answer(send, BAD_QUERY)
                return
        headers = scope["headers"]
        if len(headers) > MAX_HEADERS:
            await answer(send, HEADERS_TOO_LARGE)
            return
        length: bytes | None = None
        framed = False
        size = 0
        for name, value in headers:
            size += len(name) + len(value)
            if name == b"content-length":
                if length is not None and value != length:
                    await answer(send, BAD_LENGTH)
                    return
                length = value
            elif name == b"transfer-encoding":
                framed = True
        if size > MAX_HEADER_BYTES:
            await answer(send, HEADERS_TOO_LARGE)
            return
        if length is not None:
            if not length.isdigit():  # ASCII digits only: no sign, no space, no "1_000"
                await answer(send, BAD_LENGTH)
                return
            declared = int(length) if len(length) <= _MAX_DIGITS else MAX_BODY + 1
            if declared > MAX_BODY:
                await answer(send, TOO_LARGE)
                return
            if declared == 0 and not framed:
                await self.app(scope, receive, send)
                return
        elif not framed and scope.get("http_version", "1.1").startswith("1"):
            await self.app(scope, receive, send)
            return
        try:
            async with asyncio.timeout(BODY_TIMEOUT):
                body = await read_body(receive)
        except TimeoutError:
            await answer(send, TIMEOUT)
            return
        except BodyTooLarge:
            await answer(send, TOO_LARGE)
            return
        if body is not None:
            await self.app(scope, _replay(body, receive), send)


class BodyTooLarge(Exception):
    """The body passed MAX_BODY; what is left of it was never read."""


async def read_body(receive: Receive) -> bytes | None:
    """The whole body, or None when the client went away; ``BodyTooLarge`` as soon as it
    passes MAX_BODY (the rest is never read)."""
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None  # http.disconnect: nobody to answer
        chunk: bytes = message.get("body", b"")
        total += len(chunk)
        if total > MAX_BODY:
            raise BodyTooLarge
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the read body as one message, then the server's own messages
    (so Django still hears ``http.disconnect``)."""
    pending: list[bytes] = [body]

    async def replay() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        return await receive()

    return replay

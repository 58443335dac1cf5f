"""Log lines: readable text by default, one JSON object per line with
``AUTHAPI_LOG_FORMAT=json`` (uvicorn's lines included), and never a secret in either."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured

from authapi import logs
from tests.conftest import PASSWORD, ROOT, bearer, login
from tests.redis_server import free_port

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyX2lkIjo0Miwic2lkIjoiYWJjIn0"
    ".c2lnbmF0dXJlLXBhcnQtb2YtYS10b2tlbg"
)
TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def _record(msg: str = "hello", *args, name: str = "authapi", level=logging.INFO, **extra):
    record = logging.LogRecord(name, level, __file__, 1, msg, args or None, None)
    record.__dict__.update(extra)
    return record


SECURITY = {
    "event": "login_succeeded",
    "user_id": 1,
    "session_id": "Zm9vYmFyYmF6cXV4MTIz",
    "ip": "127.0.0.1",
    "user_agent": "Mozilla/5.0 (X11)",
    "reason": None,
}
ACCESS = (
    '%s - "%s %s HTTP/%s" %d',
    "127.0.0.1:5000",
    "GET",
    "/x?access_token=abc&page=2",
    "1.1",
    200,
)


# --- the two formats -----------------------------------------------------------------


def test_a_text_line_has_time_level_logger_and_the_event_fields():
    line = logs.TextFormatter().format(_record(name="authapi.security", security=SECURITY))
    assert re.fullmatch(
        rf"{TIME} INFO authapi.security login_succeeded user_id=1 "
        r'session_id=Zm9vYmFyYmF6cXV4MTIz ip=127.0.0.1 user_agent="Mozilla/5.0 \(X11\)"',
        line,
    ), line


def test_a_text_line_stays_one_line_whatever_the_client_sent():
    forged = "curl/8\n2026-01-01T00:00:00.000Z CRITICAL authapi.security admin_granted"
    fields = {**SECURITY, "user_agent": forged}
    for record in (_record(name="authapi.security", security=fields), _record("ua %s", forged)):
        line = logs.TextFormatter().format(record)
        assert "\n" not in line and "CRITICAL" in line


def test_a_json_line_has_the_event_fields_at_the_top():
    entry = json.loads(
        logs.JsonFormatter().format(_record(name="authapi.security", security=SECURITY))
    )
    assert re.fullmatch(TIME, entry["time"])
    assert entry["level"] == "INFO" and entry["logger"] == "authapi.security"
    for key, value in SECURITY.items():
        assert entry[key] == value


def test_access_lines_are_structured_and_redacted():
    record = _record(*ACCESS, name="uvicorn.access")
    entry = json.loads(logs.JsonFormatter().format(record))
    assert entry["path"] == "/x?access_token=[redacted]&page=2"
    assert entry["status"] == 200 and entry["method"] == "GET"
    assert entry["client"] == "127.0.0.1:5000" and entry["http_version"] == "1.1"
    assert "abc" not in json.dumps(entry)
    text = logs.TextFormatter().format(record)
    assert text.endswith(
        ' uvicorn.access 127.0.0.1:5000 - "GET /x?access_token=[redacted]&page=2 HTTP/1.1" 200'
    )


def test_exceptions_are_one_json_field_and_redacted():
    try:
        raise ValueError(f"bad token {JWT}")
    except ValueError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    entry = json.loads(logs.JsonFormatter().format(record))
    assert "ValueError: bad token [redacted]" in entry["exception"]
    assert "Traceback" in entry["exception"] and JWT not in json.dumps(entry)
    text = logs.TextFormatter().format(record)
    assert "ValueError: bad token [redacted]" in text and JWT not in text


# --- redaction --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, kept",
    [
        (f"token {JWT} seen", "token [redacted] seen"),
        (f"{JWT[:-5]}", "[redacted]"),  # a cut signature
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer [redacted]"),
        ("authorization: basic YWxpY2U6cA==", "authorization: basic [redacted]"),
        ("GET /me?token=s3cr3t HTTP/1.1", "GET /me?token=[redacted] HTTP/1.1"),
        ("/cb?code=xyz&state=1", "/cb?code=[redacted]&state=1"),
        ("/m?access%5Ftoken=xyz", "/m?access%5Ftoken=[redacted]"),
        ("/m?Refresh=xyz&Password=p", "/m?Refresh=[redacted]&Password=[redacted]"),
        ("password='hunter2' and secret: abc", "password='[redacted]' and secret: [redacted]"),
        ("refresh_token=abc", "refresh_token=[redacted]"),
        ("event='token_refreshed' reason='password_changed'", None),
        ("host api.example.com at 127.0.0.1, session_id=abc", None),
    ],
)
def test_redact(text, kept):
    assert logs.redact(text) == (text if kept is None else kept)


# --- configuration ------------------------------------------------------------------------


def test_logging_config_names_the_variable_at_fault():
    with pytest.raises(ImproperlyConfigured, match="AUTHAPI_LOG_FORMAT has value 'xml'"):
        logs.logging_config("xml", "INFO")
    with pytest.raises(ImproperlyConfigured, match="AUTHAPI_LOG_LEVEL has value 'LOUD'"):
        logs.logging_config("json", "loud")
    assert logs.logging_config(None, None)["formatters"]["authapi"]["()"].endswith("TextFormatter")
    assert logs.logging_config(" JSON ", "debug")["loggers"]["authapi"]["level"] == "DEBUG"


def test_the_uvicorn_log_config_file_is_valid():
    result = subprocess.run(
        [sys.executable, "-m", "authapi.logs", "json"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert config["formatters"]["authapi"]["()"] == "authapi.logs.JsonFormatter"
    assert config["loggers"]["uvicorn.access"]["level"] == "INFO"
    bad = subprocess.run(
        [sys.executable, "-m", "authapi.logs", "yaml"], capture_output=True, text=True, cwd=ROOT
    )
    assert bad.returncode == 2 and "AUTHAPI_LOG_FORMAT" in bad.stderr


# --- a real server ------------------------------------------------------------------------


@contextmanager
def _uvicorn(output: Path, *args: str, env: dict[str, str]):
    """uvicorn as documented (host, port, nothing else unless given), its output in a file."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "project.asgi:application",
               "--host", "127.0.0.1", "--port", str(port), *args]  # fmt: skip
    with output.open("wb") as sink:
        process = subprocess.Popen(
            command, env={**os.environ, **env}, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, output.read_text()
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "uvicorn did not start"
                    time.sleep(0.05)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _full_flow(base: str, user) -> list[str]:
    """Every kind of line: successes, failures, reuse, a token in a query string."""
    secrets = [PASSWORD, "a-wrong-password-9"]
    async with httpx.AsyncClient(base_url=base, headers={"User-Agent": "flow-test/1.0"}) as c:
        pair = await login(c, user)
        nxt = (await c.post("/api/auth/refresh", json={"refresh": pair["refresh"]})).json()
        await c.post("/api/auth/refresh", json={"refresh": pair["refresh"]})  # reuse
        again = await login(c, user)
        await c.get("/api/auth/me", params={"access_token": again["access"]})
        await c.get(f"/api/auth/me?token={again['access']}&refresh={again['refresh']}")
        await c.get("/api/auth/me", headers=bearer(again["access"]))
        await c.post("/api/auth/verify", json={"token": again["refresh"][:-3]})
        await c.post("/api/auth/login", json={"username": user.username, "password": secrets[1]})
        await c.post("/api/auth/login", data={"username": user.username, "password": secrets[1]})
        await c.post(
            "/api/auth/logout", json={"refresh": again["refresh"]}, headers=bearer(again["access"])
        )
        await c.get("/no/such/page")
    for p in (pair, nxt, again):
        secrets += [p["access"], p["refresh"], *p["access"].split("."), *p["refresh"].split(".")]
    return secrets


def _json_lines(output: Path) -> list[dict]:
    lines = output.read_text().splitlines()
    assert lines
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not JSON: {line!r}")
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry), entry
        assert re.fullmatch(TIME, entry["time"])
    return entries


async def test_every_line_of_a_json_server_is_json_and_holds_no_secret(tmp_path, user):
    output = tmp_path / "server.log"
    with _uvicorn(output, env={"AUTHAPI_LOG_FORMAT": "json"}) as base:
        secrets = await _full_flow(base, user)
    entries = _json_lines(output)
    text = output.read_text()
    for secret in secrets:
        assert secret not in text
    by_logger = {entry["logger"] for entry in entries}
    assert {"uvicorn.error", "uvicorn.access", "authapi.security"} <= by_logger
    security = [e for e in entries if e["logger"] == "authapi.security"]
    assert [e["event"] for e in security] == [
        "login_succeeded",
        "token_refreshed",
        "refresh_reuse_detected",
        "session_revoked",
        "login_succeeded",
        "login_failed",
        "login_failed",
        "session_revoked",
    ]
    first = security[0]
    assert first["user_id"] == user.pk and first["ip"] == "127.0.0.1"
    assert first["user_agent"] == "flow-test/1.0" and len(first["session_id"]) >= 16
    assert security[3]["reason"] == "reuse" and security[-1]["reason"] == "logout"
    assert security[2]["level"] == "WARNING"
    access = [e for e in entries if e["logger"] == "uvicorn.access"]
    assert len(access) == 12
    assert {e["status"] for e in access} >= {200, 204, 401, 404}
    queried = [e["path"] for e in access if "?" in e["path"]]
    assert queried == [
        "/api/auth/me?access_token=[redacted]",
        "/api/auth/me?token=[redacted]&refresh=[redacted]",
    ]


async def test_with_workers_the_log_config_flag_makes_every_line_json(tmp_path, user):
    config = tmp_path / "log-config.json"
    made = subprocess.run(
        [sys.executable, "-m", "authapi.logs", "json"], capture_output=True, text=True, cwd=ROOT
    )
    config.write_text(made.stdout)
    output = tmp_path / "server.log"
    args = ("--workers", "2", "--log-config", str(config))
    with _uvicorn(output, *args, env={"AUTHAPI_LOG_FORMAT": "json"}) as base:
        secrets = await _full_flow(base, user)
    entries = _json_lines(output)
    messages = [e["message"] for e in entries]
    assert any(m.startswith("Started parent process") for m in messages)  # the supervisor
    assert sum(m.startswith("Started server process") for m in messages) == 2  # each worker
    text = output.read_text()
    for secret in secrets:
        assert secret not in text


# --- one event, one line -------------------------------------------------------------------

# Every character str.splitlines() (and so many a log viewer) breaks a line at.
BREAKS = ["\r", "\n", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("char", BREAKS, ids=[f"U+{ord(c):04X}" for c in BREAKS])
@pytest.mark.parametrize("formatter", [logs.TextFormatter, logs.JsonFormatter])
def test_a_line_break_of_any_kind_is_written_as_an_escape(formatter, char):
    forged = f"curl/8{char}2026-01-01T00:00:00.000Z CRITICAL authapi.security admin_granted"
    fields = {**SECURITY, "user_agent": forged}
    for record in (_record(name="authapi.security", security=fields), _record("ua %s", forged)):
        line = formatter().format(record)
        assert len(line.splitlines()) == 1 and char not in line, repr(line)
        if formatter is logs.JsonFormatter:
            entry = json.loads(line)
            assert forged in (entry["message"][3:], entry.get("user_agent"))
        else:
            assert re.search(r"curl/8\\(?:[rnvf]|x[0-9a-f]{2}|u[0-9a-f]{4})2026", line), line
            quoted = re.search(r' user_agent=("(?:[^"\\]|\\.)*")', line)
            if quoted:  # an event's field is a JSON string: it reads back as sent
                assert json.loads(quoted[1]) == forged


def test_a_traceback_in_text_keeps_to_indented_lines():
    try:
        raise ValueError("bad\n2026-01-01T00:00:00.000Z CRITICAL authapi forged\u2028x")
    except ValueError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    first, *rest = logs.TextFormatter().format(record).splitlines()
    assert re.match(TIME, first) and rest
    assert all(line.startswith("  ") for line in rest), rest


def _raw_login(port: int, agent: bytes, username: str) -> bytes:
    """A login over a plain socket, the User-Agent's bytes exactly as given."""
    body = json.dumps({"username": username, "password": "wrong"}).encode()
    head = (
        b"POST /api/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: " + agent + b"\r\n"
        b"Content-Type: application/json\r\nConnection: close\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer.split(b"\r\n", 1)[0]


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_a_server_writes_one_line_per_event_whatever_the_client_sends(tmp_path, fmt):
    output = tmp_path / "server.log"
    sent = 0
    with _uvicorn(output, env={"AUTHAPI_LOG_FORMAT": fmt}) as base:
        port = int(base.rsplit(":", 1)[1])
        for i, char in enumerate(BREAKS):
            # in a header, as bytes (a server reads header bytes as Latin-1; the UTF-8 of
            # U+2028 arrives as three characters, one of them a C1 control)
            raw = char.encode("latin-1") if ord(char) < 256 else char.encode()
            status = _raw_login(port, b"agent/" + raw + b"forged", f"nobody-h{i}")
            # the HTTP parser refuses the C0 controls (400); NEL and the rest come through
            expected = b"400" if char < " " else b"401"
            assert status.startswith(b"HTTP/1.1 " + expected), (char, status)
            sent += expected == b"401"
            # in a body
            status = _raw_login(port, b"agent/body", f"nobody{char}forged-b{i}")
            assert status.startswith(b"HTTP/1.1 401"), status
            sent += 1
    text = output.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert text.count("\n") == len(lines)  # no break but LF, and LF only between records
    if fmt == "json":
        entries = [json.loads(line) for line in lines]
        failed = [e for e in entries if e.get("event") == "login_failed"]
        assert "agent/\x85forged" in {e["user_agent"] for e in failed}
        assert "\\u0085forged" in text
    else:
        assert all(re.match(rf"{TIME} [A-Z]+ ", line) for line in lines), lines
        failed = [line for line in lines if " login_failed " in line]
        assert any("agent/\\u0085forged" in line for line in failed), failed
    assert len(failed) == sent
    for char in BREAKS:
        assert char not in text.replace("\n", ""), f"U+{ord(char):04X} written raw"


# --- redaction after decoding --------------------------------------------------------------


def _encoded(token: str, dots: str = "%2E") -> str:
    return token.replace(".", dots)


@pytest.mark.parametrize(
    "text",
    [
        f"GET /api/auth/me?x={_encoded(JWT)} HTTP/1.1",
        f"GET /api/auth/me?x={_encoded(JWT, '%2e')}&page=2",
        f"/x/{_encoded(JWT)}/y",
        f"/cb?next=%2Fme%3Ft%3D{_encoded(JWT, '%252E')}",  # encoded twice
        "/p?x=" + "".join(f"%{ord(c):02X}" for c in JWT),  # every character encoded
    ],
)
def test_redact_finds_a_percent_encoded_jwt(text):
    redacted = logs.redact(text)
    assert REDACTED_JWT.search(redacted) is None and "[redacted]" in redacted, redacted
    for part in JWT.split("."):
        assert part not in redacted


REDACTED_JWT = re.compile(r"eyJhbGci|c2lnbmF0dXJl")


def test_redact_leaves_ordinary_encoded_text_as_it_was():
    for text in ("/search?q=caf%C3%A9%20au%20lait&page=2", "/files/a%2Fb%2Fc.txt", "%" * 50):
        assert logs.redact(text) == text


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_a_percent_encoded_token_never_reaches_a_server_log(tmp_path, fmt, user):
    output = tmp_path / "server.log"
    with _uvicorn(output, env={"AUTHAPI_LOG_FORMAT": fmt}) as base:
        async with httpx.AsyncClient(base_url=base) as c:
            access = (await login(c, user))["access"]
            for target in (
                f"/api/auth/me?x={_encoded(access)}",
                f"/api/auth/me?x={_encoded(access, '%2e')}&y=1",
                f"/nowhere/{_encoded(access)}/x",
                f"/nowhere/{_encoded(access, '%252E')}",
            ):
                assert (await c.get(target)).status_code in (401, 404)
    text = output.read_text()
    assert text.count("[redacted]") >= 4
    for part in access.split("."):
        assert part not in text

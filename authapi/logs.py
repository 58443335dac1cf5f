"""Log lines for people (``text``) or for machines (``json``, one object per line), with
every secret taken out: ``AUTHAPI_LOG_FORMAT`` and ``AUTHAPI_LOG_LEVEL``.

``project/settings.py`` sets ``LOGGING = logging_config(format, level)``. One handler on
the root logger formats everything: the app, the security events (``authapi.security``,
their fields as JSON fields), Django, and uvicorn's ``uvicorn.error`` and ``uvicorn.access``.
uvicorn configures those two before it imports the app; Django's ``dictConfig`` of
``LOGGING`` then replaces their handlers, so every line logged once the app is loaded is
ours (levels are left as uvicorn's ``--log-level`` set them, and ``--no-access-log`` is
kept). Lines before that are uvicorn's own: with ``--workers`` the supervisor never loads
the app, so give uvicorn the same configuration as a file::

    python -m authapi.logs json > var/log-config.json
    uvicorn project.asgi:application --workers 4 --log-config var/log-config.json

Redaction, in every message, exception and field: anything shaped like a JWT (three
base64url segments), ``Bearer``/``Basic`` credentials, ``password=...``-like pairs, and the
values of token-, password- and key-like query-string parameters (``?access_token=...``);
a JWT is also found percent-encoded (``%2E`` for its dots, or encoded twice over).

One event, one line, in both formats: every character ``str.splitlines()`` or a log viewer
takes for a break (CR, LF, VT, FF, U+001C-U+001E, U+0085, U+2028, U+2029), and the other
control characters, is written as an escape (``\\x85``, ``\\u2028``), wherever it came
from; a text traceback follows its record on indented lines.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from django.core.exceptions import ImproperlyConfigured

REDACTED = "[redacted]"

_B64 = r"[A-Za-z0-9_-]"
# A JWS header is base64url JSON, so it starts "ey" ('{"') or "ew" ('{' and a newline);
# other three-segment shapes only when every segment is long, so host names stay readable.
_JWT = re.compile(
    rf"(?<![A-Za-z0-9_-])(?:e[yw]{_B64}{{6,}}\.{_B64}{{6,}}\.{_B64}*"
    rf"|{_B64}{{16,}}\.{_B64}{{16,}}\.{_B64}{{16,}})"
)
_SCHEME = re.compile(r"(?i)\b((?:bearer|basic)\s+)[^\s\"',;]+")  # an Authorization value
_SECRET_WORDS = r"password|passwd|secret|token|refresh|jwt|api[_-]?key"
_PAIR = re.compile(
    rf"(?i)(?<![A-Za-z0-9])((?:{_SECRET_WORDS})[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;}}]+"
)
_QUERY = re.compile(r"\?([^\s\"'#]*)")
_SENSITIVE_KEY = re.compile(
    r"(?i)token|refresh|passw|pwd|secret|jwt|auth|key|sig|session|csrf|code|credential"
)


def redact_query(query: str) -> str:
    """``a=1&access_token=x`` -> ``a=1&access_token=[redacted]``; keys are decoded first."""
    parts = []
    for pair in query.split("&"):
        name, eq, _ = pair.partition("=")
        if eq and _SENSITIVE_KEY.search(unquote_plus(name)):
            pair = f"{name}={REDACTED}"
        parts.append(pair)
    return "&".join(parts)


# A run of URL characters long enough to hold a JWT, maybe percent-encoded
# ("eyJ...%2EeyJ...%2Esig"). One character class, no nesting: linear on any input.
_URL_RUN = re.compile(r"[A-Za-z0-9_.~+%-]{20,}")
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def _decoded_jwt(match: re.Match[str]) -> str:
    """A run as it is, unless percent-decoding it (up to three times over) shows a JWT."""
    run = decoded = match[0]
    for _ in range(3):
        if not _ESCAPE.search(decoded):
            break
        decoded = unquote_plus(decoded)
        if _JWT.search(decoded):
            return _JWT.sub(REDACTED, decoded)
    return run


def redact(text: str) -> str:
    """``text`` with JWTs, Bearer credentials, secret pairs and query secrets replaced;
    JWTs are looked for in percent-decoded paths and query strings too."""
    text = _JWT.sub(REDACTED, text)
    text = _URL_RUN.sub(_decoded_jwt, text)
    text = _SCHEME.sub(rf"\g<1>{REDACTED}", text)
    text = _QUERY.sub(lambda m: "?" + redact_query(m[1]), text)
    return _PAIR.sub(rf"\g<1>{REDACTED}", text)


# What str.splitlines() or a log viewer may take for a line break (CR, LF, VT, FF,
# U+001C-U+001E, NEL U+0085, U+2028, U+2029), with the other C0/C1 controls (a terminal's
# escape sequences): each written as a visible escape, so one record stays one line.
_BREAKS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\r": "\\r", "\n": "\\n", "\v": "\\v", "\f": "\\f"}


def _escape(match: re.Match[str]) -> str:
    char = match[0]
    return _NAMED.get(char) or (
        f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
    )


def one_line(text: str) -> str:
    """``text`` with every line break and control character written as an escape."""
    return _BREAKS.sub(_escape, text)


# JSON escapes C0 controls itself; with ensure_ascii=False it leaves these raw.
_JSON_RAW = re.compile(r"[\x7f-\x9f\u2028\u2029]")


def _json_escaped(text: str) -> str:
    """JSON text with the characters ``ensure_ascii=False`` leaves raw escaped too."""
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


def _clean(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


def _access_fields(record: logging.LogRecord) -> dict[str, Any] | None:
    """uvicorn's access line, ``'%s - "%s %s HTTP/%s" %d'`` and its five arguments."""
    args = record.args
    if record.name != "uvicorn.access" or not isinstance(args, tuple) or len(args) != 5:
        return None
    client, method, path, version, status = args
    target, _, query = str(path).partition("?")
    return {
        "client": str(client),
        "method": str(method),
        "path": target + ("?" + redact_query(query) if query else ""),
        "http_version": str(version),
        "status": status,
    }


class _Formatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def _extra_text(self, record: logging.LogRecord) -> str:
        parts = []
        if record.exc_info:
            parts.append(self.formatException(record.exc_info))
        elif record.exc_text:
            parts.append(record.exc_text)
        if record.stack_info:
            parts.append(self.formatStack(record.stack_info))
        return redact("\n".join(parts))


def _logfmt(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\\') or not text.isprintable():
        return _json_escaped(json.dumps(text, ensure_ascii=False))
    return text


class TextFormatter(_Formatter):
    """``2026-12-01T19:00:00.123Z INFO authapi.security login_succeeded user_id=1 ...``"""

    def format(self, record: logging.LogRecord) -> str:
        security = getattr(record, "security", None)
        access = _access_fields(record)
        if isinstance(security, dict):
            rest = " ".join(
                f"{k}={_logfmt(v)}" for k, v in security.items() if k != "event" and v is not None
            )
            message = f"{security.get('event')} {rest}".rstrip()
        elif access is not None:
            message = (
                f'{access["client"]} - "{access["method"]} {access["path"]} '
                f'HTTP/{access["http_version"]}" {access["status"]}'
            )
        else:
            message = record.getMessage()
        # One record, one line: a client's text (a path, a user agent) cannot forge another.
        message = one_line(redact(message))
        line = f"{self.formatTime(record)} {record.levelname} {record.name} {message}"
        extra = self._extra_text(record)
        if not extra:
            return line
        # A traceback follows, indented: only a record's own line starts at the margin.
        return "\n".join([line, *("  " + one_line(part) for part in extra.split("\n"))])


class JsonFormatter(_Formatter):
    """One JSON object per record: ``time``, ``level``, ``logger``, ``message``, then the
    security event's fields or the access line's, and ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        security = getattr(record, "security", None)
        fields = security if isinstance(security, dict) else _access_fields(record) or {}
        for key, value in fields.items():
            entry.setdefault(str(key), _clean(value))
        extra = self._extra_text(record)
        if extra:
            entry["exception"] = extra
        text = json.dumps(entry, ensure_ascii=False, default=lambda v: redact(str(v)))
        return _json_escaped(text)


def _access_log_disabled() -> bool:
    """Whether uvicorn was started with ``--no-access-log`` (it empties the logger)."""
    access = logging.getLogger("uvicorn.access")
    return not access.handlers and not access.propagate


def logging_config(fmt: str | None = "text", level: str | None = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict (Django's ``LOGGING``) for ``fmt`` and ``level``."""
    from authapi import conf  # validated as every other AUTHAPI setting

    fmt = conf.parse("LOG_FORMAT", fmt)
    level = conf.parse("LOG_LEVEL", level)
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    access_off = _access_log_disabled()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"authapi": {"()": f"authapi.logs.{formatter.__name__}"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "authapi",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["console"], "level": "WARNING"},
        "loggers": {
            "authapi": {"level": level},
            # Through the root handler; Django's own handlers (console under DEBUG,
            # mail_admins) go. Its 4xx warnings repeat the access log: errors only.
            "django": {"handlers": [], "level": "INFO", "propagate": True},
            "django.request": {"level": "ERROR"},
            # No "level": uvicorn's --log-level stays in force.
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": not access_off},
        },
    }


def main(argv: list[str]) -> int:
    """``python -m authapi.logs [text|json] [LEVEL]``: the same config for ``--log-config``."""
    try:
        config = logging_config(*argv[:2])
    except ImproperlyConfigured as exc:
        print(exc, file=sys.stderr)
        return 2
    # Read before the app loads, in place of uvicorn's own config, which sets these levels.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        config["loggers"].setdefault(name, {})["level"] = "INFO"
    print(json.dumps(config, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

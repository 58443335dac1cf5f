"""Request and response bodies; request bodies parse from JSON or from a form."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, TypeVar

from django.core.exceptions import BadRequest as DjangoBadRequest
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest
from django.http.multipartparser import MultiPartParserError
from ninja import Schema
from pydantic import Field, StrictStr, ValidationError
from pydantic.json_schema import SkipJsonSchema

from authapi.errors import (
    MAX_BODY,
    BadRequest,
    InvalidBody,
    JsonSentAsForm,
    PayloadTooLarge,
    UnsupportedMediaType,
)

M = TypeVar("M", bound=Schema)


NO_NUL = r"^[^\x00]*$"  # declared in the schema, so clients know before they send


# What "Try it out" in the docs UI fills in: the user README's first step creates, and
# token-shaped strings (paste the real ones from the login answer).
EXAMPLE_REFRESH = (
    "eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzLWV4YW1wbGUiLCJ0eXAiOiJKV1QifQ."
    "eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.paste-the-refresh-token-from-login"
)
EXAMPLES: dict[str, dict[str, str]] = {
    "LoginIn": {"username": "alice", "password": "s3cret-pass"},
    "RefreshIn": {"refresh": EXAMPLE_REFRESH},
    "VerifyIn": {"token": EXAMPLE_REFRESH},
}


class LoginIn(Schema):
    username: StrictStr = Field(min_length=1, max_length=150, pattern=NO_NUL, examples=["alice"])
    password: StrictStr = Field(
        min_length=1, max_length=4096, pattern=NO_NUL, examples=["s3cret-pass"]
    )


class RefreshIn(Schema):
    refresh: StrictStr = Field(min_length=1, max_length=8192, pattern=NO_NUL)


class VerifyIn(Schema):
    token: StrictStr = Field(min_length=1, max_length=8192, pattern=NO_NUL)


class TokenPair(Schema):
    access: str
    # Absent or a string, never null: views that return it set exclude_none=True.
    refresh: str | SkipJsonSchema[None] = Field(
        None, description="Left out when the response sets it as a cookie (AUTHAPI_COOKIES=1)."
    )
    token_type: str = "Bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_expires_in: int = Field(description="Seconds until the refresh token expires.")


class Error(Schema):
    detail: str
    code: str


class Empty(Schema):
    pass


class Health(Schema):
    status: str = Field(description='"ok" or "unavailable"')
    database: str
    redis: str
    detail: str | None = None
    code: str | None = None


class Jwks(Schema):
    keys: list[dict[str, Any]] = Field(description="RFC 7517 JSON Web Keys, each with its kid.")


class Me(Schema):
    id: int | str
    username: str
    email: str = ""
    first_name: str = ""
    last_name: str = ""


class SessionOut(Schema):
    id: str
    created_at: datetime
    last_used_at: datetime
    user_agent: str
    ip: str
    current: bool
    expires_at: datetime


def _decode(request: HttpRequest) -> dict[str, Any]:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise BadRequest("Content-Length is not a number.") from None
    if length > MAX_BODY:
        raise PayloadTooLarge()
    try:
        body = request.body
    except RequestDataTooBig:
        raise PayloadTooLarge() from None
    if len(body) > MAX_BODY:
        raise PayloadTooLarge()
    content_type = (request.content_type or "").lower()
    if content_type == "application/x-www-form-urlencoded" and _is_json_object(body):
        raise JsonSentAsForm()  # curl -d '{"username": ...}': say what to send instead
    if content_type in {"application/x-www-form-urlencoded", "multipart/form-data"}:
        try:
            return {key: request.POST.get(key) for key in request.POST}
        except (
            MultiPartParserError,
            SuspiciousOperation,  # TooManyFieldsSent, TooManyFilesSent
            DjangoBadRequest,  # a charset other than UTF-8
            UnicodeError,  # also codecs that refuse to decode at all ("undefined", "idna")
            LookupError,  # a multipart charset that is no text encoding (rot13, base64)
        ):
            raise BadRequest("Malformed form body (forms must be UTF-8).") from None
    if (
        content_type == "application/json"
        or content_type.endswith("+json")
        or (not content_type and body.lstrip().startswith(b"{"))
    ):
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            if _FORM.fullmatch(body):
                raise BadRequest(
                    "The body is a form but its Content-Type is application/json: send a "
                    "JSON object, or Content-Type: application/x-www-form-urlencoded."
                ) from None
            raise BadRequest("Malformed JSON body.") from None
        if not isinstance(data, dict):
            raise BadRequest("The JSON body must be an object.")
        return data
    if not body and not content_type:
        return {}
    raise UnsupportedMediaType()


_FORM = re.compile(rb"[\w.%+-]+=[^&=\s]*(?:&[\w.%+-]+=[^&=\s]*)*")  # name=value&...


def _is_json_object(body: bytes) -> bool:
    if not body.lstrip().startswith(b"{"):
        return False
    try:
        return isinstance(json.loads(body), dict)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False


def parse(request: HttpRequest, model: type[M]) -> M:
    """The request body, JSON or form, validated as ``model``; 400/413/422 otherwise."""
    data = _decode(request)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        fields = ", ".join(sorted({e["field"] for e in errors}))
        raise InvalidBody(
            f"Invalid or missing field(s): {fields}.", extra={"errors": errors}
        ) from None


def body_doc(model: type[Schema]) -> dict[str, Any]:
    """OpenAPI ``requestBody`` for a body accepted as JSON or as a form."""
    schema = model.model_json_schema()
    example = EXAMPLES.get(model.__name__)
    extra = {"example": example} if example else {}
    content = {
        "application/json": {"schema": schema, **extra},
        "application/x-www-form-urlencoded": {"schema": schema, **extra},
    }
    return {"requestBody": {"required": True, "content": content}}

"""Property-based fuzzing of every operation in our OpenAPI document (schemathesis).

Generated bodies, path parameters and Bearer values go to the ASGI app: nothing may
answer 5xx, and every answer must be one the document declares, with the declared body.
A second pass sends a live access token, so protected operations are fuzzed past the
auth check too. Bounded: a fixed number of examples per operation.
"""

from __future__ import annotations

from functools import cache

import schemathesis
from django.contrib.auth import get_user_model
from django.test import RequestFactory
from hypothesis import HealthCheck, settings

from authapi import sessions, store
from project.asgi import application

schema = schemathesis.openapi.from_asgi("/api/openapi.json", application)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation(case):
    case.call_and_validate()


@cache
def _user():
    model = get_user_model()
    return model.objects.create_user("schema-fuzz", password="fuzz-password-1")


def _fresh_access_token() -> str:
    """A new session each call: logout-all in one example must not starve the next."""
    request, user = RequestFactory().post("/api/auth/login"), _user()
    _, pair = store.run_sync(lambda: sessions.start(user, request))
    return str(pair["access"])


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_authenticated(case):
    case.call_and_validate(headers={"Authorization": f"Bearer {_fresh_access_token()}"})

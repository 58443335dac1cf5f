"""AUTHAPI_CUSTOM_CLAIMS: extra claims go in; reserved ones can never be overridden."""

from __future__ import annotations

import jwt
import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from authapi import startup
from tests.conftest import bearer, login


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


async def test_custom_claims_are_in_both_tokens_and_survive_refresh(
    client, make_user, authapi_settings
):
    user = await make_user(is_staff=True)
    with authapi_settings(CUSTOM_CLAIMS="tests.claims.roles"):
        pair = await login(client, user)
        nxt = (await client.post("/api/auth/refresh", json={"refresh": pair["refresh"]})).json()
    for token in (pair["access"], pair["refresh"], nxt["access"], nxt["refresh"]):
        claims = _claims(token)
        assert claims["roles"] == ["staff"] and claims["username"] == user.username


async def test_reserved_claims_are_dropped_not_obeyed(client, user, authapi_settings, caplog):
    with authapi_settings(CUSTOM_CLAIMS="tests.claims.greedy"):
        pair = await login(client, user)
    access = _claims(pair["access"])
    assert access["user_id"] == user.pk
    assert access["token_type"] == "access"
    assert access["exp"] > 1 and access["sid"] != "x" * 22
    assert access["plan"] == "pro"
    assert (await client.get("/api/auth/me", headers=bearer(pair["access"]))).status_code == 200
    assert any("reserved claims" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("name", ["tests.claims.not_a_dict", "tests.claims.not_json"])
async def test_broken_claims_callables_never_cost_a_500(client, user, authapi_settings, name):
    with authapi_settings(CUSTOM_CLAIMS=name):
        pair = await login(client, user)
    assert "roles" not in _claims(pair["access"])


def test_unimportable_callable_is_a_startup_error(authapi_settings):
    with authapi_settings(CUSTOM_CLAIMS="tests.claims.missing"):
        with pytest.raises(SystemCheckError, match="authapi.E003"):
            call_command("check")
        with pytest.raises(Exception, match="AUTHAPI_CUSTOM_CLAIMS"):
            startup.validate()

"""The accounts server starts, signs up and verifies by the mailed link (more in
tests/test_accounts*.py)."""

from __future__ import annotations

import httpx
import pytest

from tests.accounts_server import PASSWORD, AccountsServer, meta


@pytest.fixture(scope="module")
def server():
    with AccountsServer() as live:
        yield live


def test_signup_verify_by_link_ends_in_our_tokens(server):
    with httpx.Client(base_url=server.api) as client:
        pending = client.post(
            "/auth/signup", json={"email": "eve@example.com", "password": PASSWORD}
        )
        assert pending.status_code == 401
        assert "access_token" not in meta(pending)
        key = server.link_key(server.wait_for_mail("eve@example.com"), "verify-email")
        token = meta(pending)["session_token"]
        done = client.post(
            "/auth/email/verify", json={"key": key}, headers={"X-Session-Token": token}
        )
        assert done.status_code == 200, done.text
        access = meta(done)["access_token"]
    me = httpx.get(f"{server.url}/api/auth/me", headers={"Authorization": f"Bearer {access}"})
    assert me.status_code == 200 and me.json()["email"] == "eve@example.com"

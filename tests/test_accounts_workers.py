"""allauth's own rate limits hold across the workers of one service: they live in Django's
cache, which the demo keeps on the store (authapi.cache.StoreCache), not in each worker's
memory where every worker would allow the limit again."""

from __future__ import annotations

import httpx
import pytest

from tests.accounts_server import AccountsServer

ADDRESS = "bomb@example.com"
ATTEMPTS = 12
LIMIT = 5  # allauth's "reset_password": "20/m/ip,5/m/key": five mails a minute per address


@pytest.fixture(scope="module")
def server():
    with AccountsServer("--workers", "2") as live:
        yield live


def test_reset_mails_to_one_address_stop_at_the_limit_across_workers(server):
    statuses = []
    for _ in range(ATTEMPTS):
        # a new connection each time: the kernel hands each to either worker
        with httpx.Client(base_url=server.api, timeout=30) as client:
            answer = client.post("/auth/password/request", json={"email": ADDRESS})
        statuses.append(answer.status_code)
        if answer.status_code == 429:
            assert answer.json()["status"] == 429, answer.text
    assert statuses.count(200) + statuses.count(401) == LIMIT, statuses
    assert statuses.count(429) == ATTEMPTS - LIMIT, statuses
    sent = [mail for mail in server.mails() if f"To: {ADDRESS}" in mail]
    assert len(sent) == LIMIT  # the mail bomb stops at five, however the workers split it

"""At scale: two auth instances and the resource service on a real 3-master Redis Cluster.

A logout at one instance is refused at the other, by introspection there, and at the
resource service, from the logout's response on.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from authapi import keys
from tests import test_redis_urls
from tests.conftest import PASSWORD, LiveServer, bearer
from tests.test_resource_kit import ResourceService

CLIENT = "orders:cluster-test-secret-value"
cluster_url = test_redis_urls.cluster_url  # the suite's real 3-master cluster (a fixture)
BASIC = {"Authorization": "Basic " + base64.b64encode(CLIENT.encode()).decode()}


@pytest.fixture(scope="module")
def fleet(
    cluster_url, tmp_path_factory
) -> Iterator[tuple[LiveServer, LiveServer, ResourceService]]:
    pem = tmp_path_factory.mktemp("cluster-keys") / "es256.pem"
    pem.write_bytes(keys.generate_private_pem("ES256"))
    pem.chmod(0o600)
    env = {"REDIS_URL": cluster_url, "AUTHAPI_ALGORITHM": "ES256",
           "AUTHAPI_SIGNING_KEY": str(pem), "AUTHAPI_RESOURCE_CLIENTS": CLIENT}  # fmt: skip
    with LiveServer(env=env) as one, LiveServer(env=env) as two:
        with ResourceService(
            RESOURCE_JWKS_URL=f"{two.url}/.well-known/jwks.json", RESOURCE_REDIS_URL=cluster_url
        ) as resource:
            yield one, two, resource


async def test_a_logout_at_one_instance_is_refused_everywhere_at_once(fleet, make_user):
    one, two, resource = fleet
    async with httpx.AsyncClient(timeout=15) as http:
        for _ in range(5):  # users of different slots
            user = await make_user()
            answer = await http.post(
                f"{one.url}/api/auth/login",
                json={"username": user.username, "password": PASSWORD},
            )
            assert answer.status_code == 200, answer.text
            pair = answer.json()
            auth = bearer(pair["access"])
            assert (await http.get(f"{two.url}/api/auth/me", headers=auth)).status_code == 200
            assert (await http.get(f"{resource.url}/api/orders", headers=auth)).status_code == 200
            described = await http.post(
                f"{two.url}/api/auth/introspect", data={"token": pair["access"]}, headers=BASIC
            )
            assert described.json()["active"] is True
            out = await http.post(f"{one.url}/api/auth/logout", json={"refresh": pair["refresh"]})
            assert out.status_code == 204
            assert (await http.get(f"{resource.url}/api/orders", headers=auth)).status_code == 401
            assert (await http.get(f"{two.url}/api/auth/me", headers=auth)).status_code == 401
            described = await http.post(
                f"{two.url}/api/auth/introspect", data={"token": pair["access"]}, headers=BASIC
            )
            assert described.json() == {"active": False}


async def test_revoke_at_one_instance_of_an_access_token_alone(fleet, make_user):
    one, two, resource = fleet
    async with httpx.AsyncClient(timeout=15) as http:
        user = await make_user()
        pair = (
            await http.post(
                f"{two.url}/api/auth/login",
                json={"username": user.username, "password": PASSWORD},
            )
        ).json()
        auth = bearer(pair["access"])
        assert (await http.get(f"{resource.url}/api/orders", headers=auth)).status_code == 200
        revoked = await http.post(f"{one.url}/api/auth/revoke", data={"token": pair["access"]})
        assert revoked.status_code == 200
        assert (await http.get(f"{resource.url}/api/orders", headers=auth)).status_code == 401
        nxt = await http.post(f"{two.url}/api/auth/refresh", json={"refresh": pair["refresh"]})
        fresh = bearer(nxt.json()["access"])
        assert (await http.get(f"{resource.url}/api/orders", headers=fresh)).status_code == 200

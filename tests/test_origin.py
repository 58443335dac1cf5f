"""The origin the RFC 8414 metadata names (authapi/origin.py), over real sockets, under
hostile Host headers: AUTHAPI_ISSUER when set, else one canonical spelling of the host
with ``Vary: Host``; and ``check --deploy``'s warning when HTTPS has no origin to name.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.conftest import ROOT, LiveServer

META = "/.well-known/oauth-authorization-server"


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with LiveServer() as live:
        yield live


@pytest.fixture
async def http(server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
        yield c


async def test_the_metadata_names_one_canonical_host(http, server):
    port = server.port
    canonical = f"http://localhost:{port}"
    for host in (
        f"localhost:{port}",
        f"LOCALHOST:{port}",
        f"localhost.:{port}",
        f"LocalHost.:{port}",
        f"localhost:0{port}",
    ):
        answer = await http.get(META, headers={"Host": host})
        assert answer.status_code == 200, (host, answer.text)
        meta = answer.json()
        assert meta["issuer"] == canonical, host
        for name in ("jwks_uri", "introspection_endpoint", "revocation_endpoint"):
            assert meta[name].startswith(canonical + "/"), (host, meta[name])
        assert "Host" in answer.headers["Vary"], host
        assert answer.headers["Cache-Control"].startswith("public")
    default_port = (await http.get(META, headers={"Host": "localhost:80"})).json()
    assert default_port["issuer"] == "http://localhost"


@pytest.mark.parametrize(
    "host", ["evil.example", "localhost:99999", "localhost:0", "local host", "localhost..", "[::1"]
)
async def test_the_metadata_refuses_a_hostile_host(http, host):
    answer = await http.get(META, headers={"Host": host})
    assert answer.status_code == 400, (host, answer.text)
    assert answer.json()["code"] == "bad_request"
    assert "public" not in answer.headers.get("Cache-Control", "")


async def test_the_metadata_with_an_issuer_ignores_the_host(make_user):
    env = {"AUTHAPI_ISSUER": "https://auth.example.com"}
    with LiveServer(env=env) as live:
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
            for host in (f"localhost:{live.port}", f"LOCALHOST.:{live.port}", "127.0.0.1:1"):
                answer = await http.get(META, headers={"Host": host})
                assert answer.status_code == 200
                meta = answer.json()
                assert meta["issuer"] == "https://auth.example.com"
                assert meta["revocation_endpoint"] == "https://auth.example.com/api/auth/revoke"
                assert "Host" not in answer.headers.get("Vary", "")


def _check_deploy(**env_vars: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHAPI_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="project.settings",
        AUTHAPI_DATA_DIR=tempfile.mkdtemp(prefix="authapi-deploy-"),
        DJANGO_SECRET_KEY="k" * 20 + "-production-secret-" + "z9" * 20,
        **env_vars,
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return result.stdout + result.stderr


def test_check_deploy_warns_when_https_has_no_issuer_to_name():
    several = "auth.example.com,www.example.com"
    output = _check_deploy(DJANGO_HTTPS="1", DJANGO_ALLOWED_HOSTS=several)
    assert "authapi.W004" in output and "AUTHAPI_ISSUER" in output
    issuer = _check_deploy(
        DJANGO_HTTPS="1", DJANGO_ALLOWED_HOSTS=several, AUTHAPI_ISSUER="https://auth.example.com"
    )
    assert "authapi.W004" not in issuer
    # One host name under HTTPS is the canonical host: nothing to warn about.
    assert "authapi.W004" not in _check_deploy(DJANGO_HTTPS="1", DJANGO_ALLOWED_HOSTS="a.example")
    assert "authapi.W004" not in _check_deploy(DJANGO_ALLOWED_HOSTS=several)  # plain HTTP


async def test_one_allowed_host_under_https_is_the_origin(client, settings_https):
    for host in ("auth.example.com", "AUTH.example.com.", "auth.example.com:8443"):
        answer = await client.get(META, headers={"Host": host, "X-Forwarded-Proto": "https"})
        assert answer.status_code == 200, (host, answer.text)
        assert answer.json()["issuer"] == "https://auth.example.com"
        assert "Host" not in answer.headers.get("Vary", "")


@pytest.fixture
def settings_https():
    from django.test import override_settings

    with override_settings(
        ALLOWED_HOSTS=["auth.example.com"],
        SECURE_SSL_REDIRECT=True,
        SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
    ):
        yield

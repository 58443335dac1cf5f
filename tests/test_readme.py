"""README's first steps, run as written on a live server started by ./scripts/serve: the
first user, then the curl and HTTPie walkthroughs, whose comments say what comes back."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.redis_server import free_port

README = (ROOT / "README.md").read_text()


def _block(marker: str) -> str:
    found = re.search(rf"<!-- {marker} -->\n```sh\n(.*?)```", README, re.S)
    assert found, marker
    return found[1]


def _expected(block: str) -> list[str]:
    """What each command's trailing comment says it prints: a status code or line."""
    return [m.strip() for m in re.findall(r"#\s*((?:HTTP/1\.1 )?\d{3}\b[^\n]*)$", block, re.M)]


@pytest.fixture(scope="module")
def served():
    data = Path(tempfile.mkdtemp(prefix="authapi-readme-"))
    port = free_port()
    keep = ("PATH", "HOME", "LANG", "PYTHON", "TMPDIR", "PIP_INDEX_URL", "PIP_FIND_LINKS")
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("PIP_")}
    env.update(AUTHAPI_DATA_DIR=str(data), PORT=str(port), DJANGO_SECRET_KEY="r" * 60)
    log = open(data / "serve.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        ["./scripts/serve"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240  # the first run may install into .venv
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((data / "serve.log").read_text()) from None
            time.sleep(0.1)
    try:
        first = re.search(r"## First steps.*?```sh\n(.*?)```", README, re.S)
        assert first and "createsuperuser" in first[1]
        _run(first[1], env, ROOT)  # the first user, as README creates it
        yield env, port, data
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # uvicorn and nothing else: its own session
        server.wait(timeout=30)
        log.close()
        banner = (data / "serve.log").read_text()
        assert f"authapi on http://127.0.0.1:{port}" in banner, banner


def _run(script: str, env: dict[str, str], cwd: Path) -> str:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_curl_walkthrough(served):
    env, port, data = served
    block = _block("walkthrough:curl").replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    out = _run(block, env, data)
    assert '"username": "alice"' in out or '"username":"alice"' in out, out
    codes = [line for line in out.splitlines() if re.fullmatch(r"\d{3}", line)]
    assert codes == _expected(block) == ["401", "401", "204", "401", "204", "401"], out


@pytest.mark.skipif(shutil.which("http", path=str(ROOT / ".venv" / "bin")) is None,
                    reason="HTTPie is not installed (the test extra installs it)")  # fmt: skip
def test_the_httpie_walkthrough(served):
    env, port, data = served
    helper = next(line for line in _block("walkthrough:curl").splitlines() if "field()" in line)
    block = _block("walkthrough:httpie").replace(":8000/", f":{port}/")
    env = {**env, "PATH": f"{ROOT / '.venv' / 'bin'}:{env['PATH']}"}
    # HTTPie reads stdin when it is not a terminal, as here; at a prompt it does not.
    wrapper = 'http() { command http --ignore-stdin "$@"; }'
    out = _run("\n".join([helper, wrapper, block]), env, data)
    statuses = [m.strip() for m in re.findall(r"HTTP/1\.1 \d{3}[^\n]*", out)]
    assert statuses == _expected(block), out
    assert '"username": "alice"' in out, out


def test_the_dpop_python_snippet(served):
    env, port, data = served
    found = re.search(r"<!-- dpop:python -->\n```python\n(.*?)```", README, re.S)
    assert found
    script = found[1].replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", script],
        cwd=data, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == ["alice", "401"]

"""README's accounts section, run as written: the curl walkthrough (signup, verify by the
mailed link, TOTP, login with the second factor, refresh, logout) against a live server
with AUTHAPI_ACCOUNTS=on, and the settings block pasted into a new startproject."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import django
import httpx
import pytest

from tests import conftest
from tests.accounts_server import PASSWORD, AccountsServer, decoded, meta, new_database

README = (conftest.ROOT / "README.md").read_text()


def _block(marker: str, language: str) -> str:
    found = re.search(rf"<!-- {marker} -->\n```{language}\n(.*?)```", README, re.S)
    assert found, marker
    return found[1]


@pytest.fixture(scope="module")
def server():
    with AccountsServer() as live:
        yield live


def test_the_accounts_walkthrough(server, tmp_path):
    block = _block("walkthrough:accounts", "sh")
    block = block.replace("http://127.0.0.1:8000", server.url, 1)
    block = block.replace("MAIL=var/mail", f"MAIL={server.mail_dir}", 1)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, capture_output=True,
        text=True, timeout=120, env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    codes = [line for line in result.stdout.splitlines() if re.fullmatch(r"\d{3}", line)]
    expected = re.findall(r"#\s*(\d{3})$", block, re.M)
    assert codes == expected, result.stdout
    assert expected == ["401", "200", "200", "200", "401", "401", "200", "200", "200", "401", "401"]


def test_the_host_settings_block_works_in_a_new_startproject(tmp_path):
    settings_part, urls_part = _block("accounts:settings", "python").split("# urls.py\n")
    subprocess.run([sys.executable, "-m", "django", "startproject", "host", str(tmp_path)],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    mail = tmp_path / "mail"
    mail.mkdir()
    settings_file = tmp_path / "host" / "settings.py"
    settings_file.write_text(
        settings_file.read_text()
        + '\nINSTALLED_APPS += ["ninja", "authapi"]\n'
        + f'AUTHAPI = {{"REDIS_URL": {os.environ["REDIS_URL"]!r}, "LOGIN_RATE_PER_IP": 0}}\n'
        + settings_part
        + _file_mail(mail)
    )
    urls_file = tmp_path / "host" / "urls.py"
    urls_file.write_text(
        urls_file.read_text() + urls_part + 'urlpatterns += [path("", include("authapi.urls"))]\n'
    )
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL"}},
        "DJANGO_SETTINGS_MODULE": "host.settings",
        "PYTHONPATH": str(tmp_path),
    }
    database = new_database(Path(tempfile.mkdtemp(prefix="authapi-host-")))
    if database.startswith("postgres"):  # the PostgreSQL leg: the host's DATABASES there
        settings_file.write_text(
            settings_file.read_text()
            + "import dj_database_url\n"
            + f"DATABASES = {{'default': dj_database_url.parse({database!r})}}\n"
        )

    def manage(*args: str) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    assert "System check identified no issues (0 silenced)." in manage("check")
    manage("migrate", "--verbosity", "0")
    with conftest.LiveServer(
        "--ws", "none", app="host.asgi:application", cwd=tmp_path, env=env
    ) as live:
        api = f"{live.url}/_allauth/app/v1"
        pending = httpx.post(
            f"{api}/auth/signup", json={"email": "ann@example.com", "password": PASSWORD}
        )
        assert pending.status_code == 401, pending.text
        text = "".join(
            decoded(part) for p in mail.iterdir() for part in p.read_text().split("-" * 79)
            if part.strip()
        )  # fmt: skip
        key = AccountsServer.link_key(
            text.replace("https://app.example.com", "http://app.example.test"), "verify-email"
        )
        done = httpx.post(
            f"{api}/auth/email/verify",
            json={"key": key},
            headers={"X-Session-Token": meta(pending)["session_token"]},
        )
        assert done.status_code == 200, done.text
        access = meta(done)["access_token"]
        me = httpx.get(f"{live.url}/api/auth/me", headers={"Authorization": f"Bearer {access}"})
        assert me.status_code == 200 and me.json()["email"] == "ann@example.com"


def _file_mail(folder: Path) -> str:
    """The file backend for the host, the way its Django line spells it (6.1: MAILERS)."""
    backend = "django.core.mail.backends.filebased.EmailBackend"
    if django.VERSION >= (6, 1):
        mailer = {"BACKEND": backend, "OPTIONS": {"file_path": str(folder)}}
        return f"MAILERS = {{'default': {mailer!r}}}\n"
    return f"EMAIL_BACKEND = {backend!r}\nEMAIL_FILE_PATH = {str(folder)!r}\n"

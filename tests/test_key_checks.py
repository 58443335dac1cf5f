"""Start-up checks on keys and settings, and ``manage.py authapi genkey``."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError

from authapi import conf, keys, startup
from tests.conftest import ROOT
from tests.redis_server import free_port
from tests.test_keys import write_key


def _write_pem(path: Path, key, encryption=None) -> str:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            encryption or serialization.NoEncryption(),
        )
    )
    return str(path)


def _check_fails(authapi_settings, match: str, **values) -> None:
    """Both doors refuse: ``manage.py check`` and the ASGI start-up validation."""
    with authapi_settings(**values):
        with pytest.raises(SystemCheckError, match=match):
            call_command("check")
        with pytest.raises(ImproperlyConfigured, match=match):
            startup.validate()


@pytest.mark.parametrize(("algorithm", "length"), [("HS256", 31), ("HS384", 47), ("HS512", 63)])
def test_hmac_key_shorter_than_its_hash_is_an_error(authapi_settings, algorithm, length):
    _check_fails(
        authapi_settings,
        rf"needs at least {length + 1}",
        ALGORITHM=algorithm,
        SIGNING_KEY="k" * length,
    )


def test_hmac_key_of_exactly_the_hash_length_is_fine(authapi_settings):
    with authapi_settings(ALGORITHM="HS256", SIGNING_KEY="k" * 32):
        call_command("check")
        startup.validate()


def test_short_previous_key_is_an_error(authapi_settings):
    _check_fails(
        authapi_settings, r"PREVIOUS_KEYS\[0\]", SIGNING_KEY="k" * 32, PREVIOUS_KEYS="short"
    )


def test_missing_pem_is_an_error(authapi_settings):
    _check_fails(
        authapi_settings,
        "cannot read the PEM file",
        ALGORITHM="EdDSA",
        SIGNING_KEY="/nonexistent/k.pem",
    )


def test_unreadable_pem_is_an_error(authapi_settings, tmp_path):
    # a directory cannot be read as a file, even by root (chmod 000 would not stop root)
    _check_fails(
        authapi_settings, "cannot read the PEM file", ALGORITHM="ES256", SIGNING_KEY=str(tmp_path)
    )


def test_asymmetric_algorithm_without_a_key_is_an_error(authapi_settings):
    _check_fails(authapi_settings, "genkey --algorithm RS256", ALGORITHM="RS256")


def test_garbage_pem_is_an_error(authapi_settings, tmp_path):
    path = tmp_path / "bad.pem"
    path.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    _check_fails(
        authapi_settings,
        "not an unencrypted PEM private key",
        ALGORITHM="EdDSA",
        SIGNING_KEY=str(path),
    )


def test_public_key_as_signing_key_is_an_error(authapi_settings, tmp_path):
    private = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "public.pem"
    path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    _check_fails(authapi_settings, "private key", ALGORITHM="EdDSA", SIGNING_KEY=str(path))


def test_encrypted_pem_is_an_error(authapi_settings, tmp_path):
    locked = serialization.BestAvailableEncryption(b"pw")
    path = _write_pem(tmp_path / "locked.pem", ec.generate_private_key(ec.SECP256R1()), locked)
    _check_fails(authapi_settings, "not an unencrypted PEM", ALGORITHM="ES256", SIGNING_KEY=path)


@pytest.mark.parametrize(
    ("algorithm", "key_alg", "match"),
    [
        ("RS256", "ES256", "not an RSA key"),
        ("PS256", "EdDSA", "not an RSA key"),
        ("ES256", "RS256", "not a P-256 EC key"),
        ("EdDSA", "ES256", "not an Ed25519 key"),
    ],
)
def test_key_that_does_not_match_the_algorithm_is_an_error(
    authapi_settings, algorithm, key_alg, match
):
    _check_fails(
        authapi_settings, match, ALGORITHM=algorithm, SIGNING_KEY=write_key(key_alg, "mismatch")
    )


def test_other_ec_curve_is_an_error(authapi_settings, tmp_path):
    path = _write_pem(tmp_path / "p384.pem", ec.generate_private_key(ec.SECP384R1()))
    _check_fails(authapi_settings, "not a P-256 EC key", ALGORITHM="ES256", SIGNING_KEY=path)


def test_small_rsa_key_is_an_error(authapi_settings, tmp_path):
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    path = _write_pem(tmp_path / "rsa1024.pem", small)
    _check_fails(authapi_settings, "1024-bit RSA key", ALGORITHM="RS256", SIGNING_KEY=path)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"ALGORITHM": "HS1"}, "AUTHAPI_ALGORITHM"),
        ({"ALGORITHM": "none"}, "AUTHAPI_ALGORITHM"),
        ({"ACCESS_TOKEN_LIFETIME": "soon"}, "AUTHAPI_ACCESS_TOKEN_LIFETIME"),
        ({"REFRESH_TOKEN_LIFETIME": "0"}, "AUTHAPI_REFRESH_TOKEN_LIFETIME"),
        ({"LEEWAY": "-1"}, "AUTHAPI_LEEWAY"),
        ({"LOGIN_RATE": "lots"}, "AUTHAPI_LOGIN_RATE"),
        ({"TRUSTED_PROXIES": "not-an-ip"}, "AUTHAPI_TRUSTED_PROXIES"),
        ({"MAX_SESSIONS_PER_USER": "0"}, "AUTHAPI_MAX_SESSIONS_PER_USER"),
    ],
)
def test_bad_settings_are_errors_that_name_the_variable(authapi_settings, values, match):
    _check_fails(authapi_settings, match, **values)


def test_errors_never_show_the_secret(authapi_settings):
    secret = "tooshort-secret"
    with authapi_settings(SIGNING_KEY=secret):
        with pytest.raises(ImproperlyConfigured) as info:
            startup.validate()
    assert secret not in str(info.value)


# --- in a fresh process: check --deploy, and uvicorn refusing to start ------------------------


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHAPI_")}
    env["AUTHAPI_DATA_DIR"] = tempfile.mkdtemp(prefix="authapi-check-")
    env["DJANGO_SETTINGS_MODULE"] = "project.settings"
    env.update(values)
    return env


def test_fresh_clone_check_deploy_warns_about_the_generated_secret():
    env = _env()
    env.pop("DJANGO_SECRET_KEY", None)
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "authapi.W001" in result.stderr + result.stdout
    secret_file = Path(env["AUTHAPI_DATA_DIR"]) / "secret_key"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600


def test_check_deploy_is_quiet_about_the_secret_when_it_is_set():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "authapi.W001" not in result.stderr + result.stdout


def test_check_deploy_fails_on_a_short_key_without_showing_it():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT, env=_env(AUTHAPI_SIGNING_KEY="tiny-secret-zz"), capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "authapi.E002" in result.stderr
    assert "tiny-secret-zz" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    "values",
    [
        {"AUTHAPI_SIGNING_KEY": "short"},
        {"AUTHAPI_ALGORITHM": "EdDSA", "AUTHAPI_SIGNING_KEY": "/nonexistent.pem"},
        {"AUTHAPI_ACCESS_TOKEN_LIFETIME": "-5"},
    ],
    ids=["short-hmac", "missing-pem", "bad-lifetime"],
)
def test_uvicorn_refuses_to_start_with_a_broken_configuration(values):
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "project.asgi:application", "--host", "127.0.0.1",
         "--port", str(port)],
        cwd=ROOT, env=_env(**values), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "AUTHAPI_" in result.stderr


# --- genkey ---------------------------------------------------------------------------------


async def _genkey(*args: str) -> str:
    out = io.StringIO()
    await sync_to_async(call_command)("authapi", "genkey", *args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("algorithm", "kind"),
    [("EdDSA", ed25519.Ed25519PrivateKey), ("ES256", ec.EllipticCurvePrivateKey),
     ("RS256", rsa.RSAPrivateKey), ("PS256", rsa.RSAPrivateKey)],
)  # fmt: skip
async def test_genkey_writes_a_private_key_with_safe_permissions(tmp_path, algorithm, kind):
    path = tmp_path / "new.pem"
    text = await _genkey("--algorithm", algorithm, "--out", str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, kind)
    assert f"AUTHAPI_SIGNING_KEY={path}" in text and "AUTHAPI_PREVIOUS_KEYS" in text
    # the written key is one the service accepts for that algorithm
    keys.build(conf.from_mapping({"ALGORITHM": algorithm, "SIGNING_KEY": str(path)}), "x")


async def test_genkey_default_location_is_private():
    from django.conf import settings

    text = await _genkey("--algorithm", "EdDSA")
    path = Path(text.split(" to ", 1)[1].split(" (mode", 1)[0])
    try:
        assert path.is_relative_to(Path(settings.DATA_DIR))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    finally:
        path.unlink()


async def test_genkey_never_overwrites_without_force(tmp_path):
    path = tmp_path / "k.pem"
    await _genkey("--algorithm", "EdDSA", "--out", str(path))
    first = path.read_bytes()
    with pytest.raises(CommandError, match="--force"):
        await _genkey("--algorithm", "EdDSA", "--out", str(path))
    assert path.read_bytes() == first
    await _genkey("--algorithm", "EdDSA", "--out", str(path), "--force")
    assert path.read_bytes() != first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(("algorithm", "size"), [("HS256", 32), ("HS384", 48), ("HS512", 64)])
async def test_genkey_for_hmac_prints_a_long_enough_secret(algorithm, size):
    text = await _genkey("--algorithm", algorithm)
    secret = text.split("AUTHAPI_SIGNING_KEY=", 1)[1].split()[0]
    assert len(secret.encode()) >= size
    keys.build(conf.from_mapping({"ALGORITHM": algorithm, "SIGNING_KEY": secret}), "x")

"""The public surface is what ``authapi`` exports, pinned (as httpx pins its own)."""

from __future__ import annotations

import subprocess
import sys

import authapi
from tests.conftest import ROOT


def test_all_is_pinned():
    assert authapi.__all__ == [
        "AccessContext",
        "AuthApiError",
        "JWTBearer",
        "StoreUnavailable",
        "TokenInvalid",
        "check_access",
        "install_error_handlers",
        "jwt_bearer",
        "serve",
    ]


def test_every_exported_name_resolves_to_the_real_object():
    from authapi import api, auth, errors
    from authapi.asgi import serving

    homes = {"install_error_handlers": api, "serve": serving}
    for name in authapi.__all__:
        home = homes.get(name) or (errors if name[0].isupper() and hasattr(errors, name) else auth)
        assert getattr(authapi, name) is getattr(home, name), name


def test_importing_the_package_needs_no_configured_django():
    out = subprocess.run(
        [sys.executable, "-c", "import authapi, sys; print('authapi.auth' in sys.modules)"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_unknown_names_are_attribute_errors():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        authapi.nope  # noqa: B018

"""The release: the sdist and the wheel as a package index would get them, and the wheel
installed the way README says into a new venv and a new ``django-admin startproject``.

The distribution is ``django-authapi`` (``authapi`` on the index is an unrelated project);
the wheel holds the ``authapi`` package alone, never ``project`` (which would shadow a
user's own), ``tests`` or ``bench``.
"""

from __future__ import annotations

import email
import email.message
import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import authapi
from tests.conftest import ROOT

NAME = "django-authapi"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Build the sdist, then the wheel from it (as ``python -m build`` does), offline."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(archive.read(name))


def test_the_wheel_holds_the_app_alone(dist):
    with zipfile.ZipFile(dist["wheel"]) as archive:
        names = archive.namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"authapi", f"django_authapi-{authapi.__version__}.dist-info"}
    assert "authapi/py.typed" in names
    assert "authapi/templates/authapi/admin/user_change_form.html" in names
    assert "authapi/management/commands/authapi.py" in names
    assert not [n for n in names if n.endswith((".pyc", ".sqlite3", ".pem", ".key"))]


def test_the_sdist_has_what_a_rebuild_and_a_reader_need(dist):
    with tarfile.open(dist["sdist"]) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    for needed in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "docs/http.md"):
        assert needed in names
    assert "authapi/__init__.py" in names
    assert not [n for n in names if n.startswith(("project/", ".venv", "var/"))]


def test_metadata_is_complete(dist):
    meta = wheel_metadata(dist["wheel"])
    assert meta["Name"] == NAME
    assert meta["Version"] == authapi.__version__
    assert meta["Requires-Python"] == ">=3.11"
    assert meta["License-Expression"] == "BSD-3-Clause"
    classifiers = meta.get_all("Classifier") or []
    for line in ("5.2", "6.0", "6.1"):
        assert f"Framework :: Django :: {line}" in classifiers
    for version in ("3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in classifiers
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Changelog", "Issues"} <= set(urls)
    requires = {r.name: r for r in map(Requirement, meta.get_all("Requires-Dist") or [])}
    # The lean serving path calls ThreadSensitiveContext(executor=...): asgiref 3.13.
    assert not requires["asgiref"].specifier.contains("3.12")
    assert requires["asgiref"].specifier.contains("3.13.0")
    assert requires["Django"].specifier.contains("5.2") and requires["Django"].specifier.contains(
        "6.1"
    )
    assert not requires["Django"].specifier.contains("5.1")
    assert meta["Description-Content-Type"] == "text/markdown"
    assert str(meta.get_payload()).startswith("# authapi")


def test_twine_accepts_both_and_the_readme_renders(dist):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "twine",
            "check",
            "--strict",
            str(dist["wheel"]),
            str(dist["sdist"]),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASSED") == 2


def test_one_version_source():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert 'version = { attr = "authapi.__version__" }' in pyproject
    assert f"## {authapi.__version__}" in (ROOT / "CHANGELOG.md").read_text()


def test_readme_installs_the_distribution_not_the_namesake():
    readme = (ROOT / "README.md").read_text()
    assert f'pip install "{NAME}' in readme or f"pip install {NAME}" in readme
    for line in readme.splitlines():
        assert 'pip install "authapi' not in line and "pip install authapi" not in line, line


def test_the_wheel_in_a_new_venv_and_a_new_startproject(dist, tmp_path):
    """README's install, then its three lines in a stock project: check says no issues."""
    target = tmp_path / "venv"
    venv.create(target, with_pip=True)
    python = str(target / "bin" / "python")
    pip = [python, "-m", "pip", "--quiet", "--disable-pip-version-check"]
    lock = ROOT / "requirements" / "runtime.txt"
    for step in (
        ["install", "--require-hashes", "--no-deps", "-r", str(lock)],
        ["install", "--no-deps", str(dist["wheel"])],
        ["check"],
    ):
        done = subprocess.run([*pip, *step], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHAPI_", "DJANGO_"))}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    site = tmp_path / "site"
    site.mkdir()
    django_admin = str(target / "bin" / "django-admin")
    subprocess.run([django_admin, "startproject", "mysite", str(site)], check=True, env=env)
    settings = site / "mysite" / "settings.py"
    text = settings.read_text().replace(
        "INSTALLED_APPS = [", 'INSTALLED_APPS = [\n    "ninja",\n    "authapi",', 1
    )
    settings.write_text(text + f'\nAUTHAPI = {{"DATA_DIR": "{tmp_path / "data"}"}}\n')
    urls = site / "mysite" / "urls.py"
    urls.write_text(
        urls.read_text()
        .replace("from django.urls import path", "from django.urls import include, path")
        .replace("urlpatterns = [", 'urlpatterns = [\n    path("", include("authapi.urls")),', 1)
    )

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [python, "manage.py", *args], cwd=site, env=env, capture_output=True, text=True
        )

    checked = manage("check")
    assert checked.returncode == 0, checked.stderr
    assert "System check identified no issues (0 silenced)." in checked.stdout, checked.stdout
    assert manage("migrate", "--noinput").returncode == 0
    # Nothing but authapi came from the wheel: a "project" package is not importable there.
    found = subprocess.run(
        [python, "-c", "import importlib.util as u; print(u.find_spec('project'))"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert found.stdout.strip() == "None"
    # Importing the app wrote nothing beside the project: no data folder yet.
    assert not (tmp_path / "data").exists()

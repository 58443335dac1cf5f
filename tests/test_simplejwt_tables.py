"""Step 5 of the simplejwt migration: simplejwt's blacklist tables go, on a project database
that holds tokens simplejwt really issued.

Each test makes a new database of the suite's kind (a SQLite file, or a database on the
suite's PostgreSQL server), migrates it as a simplejwt project (tests/drf_settings.py: its
blacklist app installed, rotation on), issues tokens through simplejwt's own views and
``RefreshToken.for_user``, blacklists some and deletes a user who has some. Every step runs
``manage.py`` in its own process, as an operator runs it.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from typing import Any

import pytest

pytest.importorskip(
    "rest_framework_simplejwt", reason="djangorestframework-simplejwt is not installed"
)

from tests import conftest  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

SIMPLEJWT_PROJECT = "tests.drf_settings"  # the blacklist app installed
AFTER = "tests.settings"  # the same project with simplejwt's apps gone
TABLES = ["token_blacklist_blacklistedtoken", "token_blacklist_outstandingtoken"]
_names = itertools.count()

ISSUE = """
import json, django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

User = get_user_model()
users = [User.objects.create_user(f"sj{i}", password="pw-sj-123456") for i in range(3)]
http = Client()

def post(path, body):
    answer = http.post(path, body, content_type="application/json")
    assert answer.status_code == 200, answer.content
    return answer.json()

pairs = [post("/simplejwt/token/", {"username": u.username, "password": "pw-sj-123456"})
         for u in users]
post("/simplejwt/token/refresh/", {"refresh": pairs[0]["refresh"]})  # rotated: blacklisted
post("/simplejwt/token/blacklist/", {"refresh": pairs[1]["refresh"]})  # logged out
RefreshToken.for_user(users[2]).blacklist()
RefreshToken.for_user(users[2])
users[2].delete()  # its tokens stay, with no user (SET_NULL)
print(json.dumps({
    "outstanding": OutstandingToken.objects.count(),
    "blacklisted": BlacklistedToken.objects.count(),
    "without_user": OutstandingToken.objects.filter(user=None).count(),
}))
"""

INSPECT = """
import json, django
django.setup()
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
print(json.dumps({
    "tables": sorted(t for t in connection.introspection.table_names()
                     if t.startswith("token_blacklist")),
    "records": sorted(m.name for m in MigrationRecorder(connection).migration_qs
                      .filter(app="token_blacklist")),
    "content_types": ContentType.objects.filter(app_label="token_blacklist").count(),
    "users": get_user_model().objects.count(),
}))
"""

# simplejwt gone from the environment too: the command must not need it.
WITHOUT_SIMPLEJWT = """
import sys
sys.modules["rest_framework_simplejwt"] = None
from django.core.management import execute_from_command_line
execute_from_command_line(["manage.py", *sys.argv[1:]])
"""


def _new_database(folder) -> str:
    """A new, empty database of the suite's kind."""
    name = f"simplejwt_{next(_names)}"
    server = conftest.pg_server
    if server is None:
        return f"sqlite:///{folder / name}.sqlite3"
    server.create_database(name)
    return f"postgres://postgres@127.0.0.1:{server.port}/{name}"


@pytest.fixture
def database_url(tmp_path) -> str:
    return _new_database(tmp_path)


def _run(url: str, settings: str, *args: str, path: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": settings}
    if path:
        env["PYTHONPATH"] = os.pathsep.join([path, str(ROOT)])
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def _manage(url: str, settings: str, *args: str) -> subprocess.CompletedProcess[str]:
    return _run(url, settings, "manage.py", *args)


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return dict(json.loads(_ok(done).strip().splitlines()[-1]))


def _issue(url: str) -> dict[str, Any]:
    issued = _json(_run(url, SIMPLEJWT_PROJECT, "-c", ISSUE))
    assert issued["outstanding"] > issued["blacklisted"] > 0
    assert issued["without_user"] > 0
    return issued


def _inspect(url: str) -> dict[str, Any]:
    return _json(_run(url, AFTER, "-c", INSPECT))


def _assert_gone(url: str, users: int) -> None:
    """No table, no migration record; every other app fully migrated; users kept."""
    state = _inspect(url)
    assert (state["tables"], state["records"], state["users"]) == ([], [], users)
    _ok(_manage(url, AFTER, "migrate", "--check"))


def _drop(url: str, settings: str, issued: dict[str, Any], records: int = 12) -> str:
    out = _ok(_manage(url, settings, "authapi", "drop-simplejwt-tables"))
    assert f"Dropped token_blacklist_blacklistedtoken ({issued['blacklisted']} row(s))" in out
    assert f"Dropped token_blacklist_outstandingtoken ({issued['outstanding']} row(s))" in out
    assert f"Marked {records} token_blacklist migration(s) unapplied" in out  # 12: no 0009
    return out


def test_plain_migrate_zero_fails_halfway_and_the_command_repairs_it(database_url):
    """Why step 5 needs its own command: unapplying simplejwt's migrations on tables that
    hold tokens fails (0007 makes ``user`` NOT NULL again, 0005 adds back a NOT NULL
    ``jti`` column with no default), each unapplied migration before it committed."""
    issued = _issue(database_url)
    failed = _manage(database_url, SIMPLEJWT_PROJECT, "migrate", "token_blacklist", "zero")
    assert failed.returncode != 0 and "IntegrityError" in failed.stderr, failed.stderr
    half = _inspect(database_url)
    assert 0 < len(half["records"]) < 12 and half["tables"] == TABLES

    _drop(database_url, SIMPLEJWT_PROJECT, issued, records=len(half["records"]))
    _assert_gone(database_url, users=2)
    # The history matches the schema: migrate makes the tables again from 0001.
    _ok(_manage(database_url, SIMPLEJWT_PROJECT, "migrate", "token_blacklist"))
    again = _inspect(database_url)
    assert again["tables"] == TABLES and len(again["records"]) == 12


def test_drop_with_the_app_still_installed(database_url):
    issued = _issue(database_url)
    out = _drop(database_url, SIMPLEJWT_PROJECT, issued)
    assert 'remove "rest_framework_simplejwt.token_blacklist" from INSTALLED_APPS' in out
    _assert_gone(database_url, users=2)
    plan = _ok(_manage(database_url, SIMPLEJWT_PROJECT, "migrate", "--plan"))
    assert "token_blacklist.0001_initial" in plan  # unapplied, as Django sees it
    # What README's step 5 adds: the app's content types and permissions, once removed.
    assert _inspect(database_url)["content_types"] == 2
    _ok(_manage(database_url, AFTER, "remove_stale_contenttypes", "--include-stale-apps",
                "--noinput"))  # fmt: skip
    assert _inspect(database_url)["content_types"] == 0
    nothing = _ok(_manage(database_url, AFTER, "authapi", "drop-simplejwt-tables"))
    assert "nothing to drop" in nothing


def test_drop_after_the_app_and_simplejwt_are_gone(database_url):
    """The project already lost ``rest_framework_simplejwt`` from INSTALLED_APPS and from
    its environment: ``migrate token_blacklist zero`` cannot run there at all."""
    issued = _issue(database_url)
    cannot = _manage(database_url, AFTER, "migrate", "token_blacklist", "zero")
    assert cannot.returncode != 0 and "No installed app" in cannot.stderr
    done = _run(database_url, AFTER, "-c", WITHOUT_SIMPLEJWT, "authapi", "drop-simplejwt-tables")
    out = _ok(done)
    assert f"({issued['outstanding']} row(s))" in out and "INSTALLED_APPS" not in out
    _assert_gone(database_url, users=2)


REFERRER = """
import django
django.setup()
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE audit (id integer PRIMARY KEY, token_id bigint NOT NULL "
                   "REFERENCES token_blacklist_outstandingtoken (id))")
    cursor.execute("INSERT INTO audit SELECT id, id FROM token_blacklist_outstandingtoken")
"""


def test_all_or_nothing(database_url):
    """A table of the project's own points at simplejwt's: the drop fails and nothing
    changed, the first table (dropped before the second failed) and the records back."""
    _issue(database_url)
    _ok(_run(database_url, SIMPLEJWT_PROJECT, "-c", REFERRER))
    before = _inspect(database_url)
    failed = _manage(database_url, SIMPLEJWT_PROJECT, "authapi", "drop-simplejwt-tables")
    assert failed.returncode != 0 and "Dropped" not in failed.stdout, failed.stdout
    assert _inspect(database_url) == before
    assert before["tables"] == TABLES and len(before["records"]) == 12


DEPENDENT_MIGRATION = """
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("token_blacklist", "0013_alter_blacklistedtoken_options_and_more")]
    operations = [
        migrations.CreateModel(
            name="Seen",
            fields=[
                ("id", models.BigAutoField(primary_key=True)),
                ("token", models.ForeignKey("token_blacklist.OutstandingToken",
                                            on_delete=models.CASCADE)),
            ],
        )
    ]
"""


def test_refused_while_a_migration_of_the_project_depends_on_simplejwts(database_url, tmp_path):
    """Dropping would leave that migration applied on top of unapplied ones: Django would
    then refuse every ``migrate`` (InconsistentMigrationHistory). Refused, nothing done."""
    app = tmp_path / "seen"
    (app / "migrations").mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (app / "migrations" / "__init__.py").write_text("")
    (app / "migrations" / "0001_initial.py").write_text(DEPENDENT_MIGRATION)
    (tmp_path / "seen_settings.py").write_text(
        "from tests.drf_settings import *  # noqa: F403\n"
        "INSTALLED_APPS = [*INSTALLED_APPS, 'seen']  # noqa: F405\n"
    )
    _issue(database_url)
    _ok(_run(database_url, "seen_settings", "manage.py", "migrate", "seen", path=str(tmp_path)))
    before = _inspect(database_url)
    refused = _run(
        database_url, "seen_settings", "manage.py", "authapi", "drop-simplejwt-tables",
        path=str(tmp_path),
    )  # fmt: skip
    assert refused.returncode != 0
    assert "These applied migrations depend on token_blacklist's: seen.0001_initial" in (
        refused.stderr
    )
    assert _inspect(database_url) == before and before["tables"] == TABLES


def test_another_database(database_url, tmp_path):
    """``--database other``: that one's tables go; the default database is not touched."""
    issued = _issue(database_url)
    default = _new_database(tmp_path)
    _issue(default)
    (tmp_path / "two_settings.py").write_text(
        "import os\nimport dj_database_url\n"
        "from tests.drf_settings import *  # noqa: F403\n"
        "DATABASES = {**DATABASES, 'other': dj_database_url.parse(os.environ['OTHER_URL'])}"
        "  # noqa: F405\n"
    )
    os.environ["OTHER_URL"] = database_url
    try:
        done = _run(
            default, "two_settings", "manage.py", "authapi", "drop-simplejwt-tables",
            "--database", "other", path=str(tmp_path),
        )  # fmt: skip
    finally:
        del os.environ["OTHER_URL"]
    assert f"({issued['outstanding']} row(s))" in _ok(done)
    _assert_gone(database_url, users=2)
    untouched = _inspect(default)
    assert untouched["tables"] == TABLES and len(untouched["records"]) == 12

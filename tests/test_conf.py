"""``authapi.conf``: one table of known settings, strict about names, exact about values.

``conf`` takes any mapping, so most tests build one inline instead of patching the
environment (as Starlette's ``tests/test_config.py``).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import fields
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from authapi import checks, conf, logs, startup
from tests.conftest import ROOT

# --- unknown names --------------------------------------------------------------------------


def test_a_misspelt_key_is_an_error_naming_it_and_the_closest():
    with pytest.raises(ImproperlyConfigured) as caught:
        conf.from_mapping({"ACCES_TOKEN_LIFETIME": 60})
    message = str(caught.value)
    assert "'ACCES_TOKEN_LIFETIME' is not an authapi setting" in message
    assert "Did you mean 'ACCESS_TOKEN_LIFETIME'?" in message


def test_a_key_like_no_setting_is_an_error_without_a_guess():
    with pytest.raises(ImproperlyConfigured, match="'ZEBRA' is not an authapi setting.$"):
        conf.from_mapping({"ZEBRA": 1})


def test_a_prefixed_key_in_the_dict_is_unknown_too():
    # AUTHAPI takes names without the prefix; the prefixed one would be ignored silently.
    with pytest.raises(ImproperlyConfigured, match="Did you mean 'ACCESS_TOKEN_LIFETIME'"):
        conf.from_mapping({"AUTHAPI_ACCESS_TOKEN_LIFETIME": 60})


def test_every_misspelt_key_is_named():
    messages = conf.unknown_keys({"ACCES_TOKEN_LIFETIME": 1, "COOKIE": "1", "LEEWAY": 2})
    assert len(messages) == 2
    assert "Did you mean 'ACCESS_TOKEN_LIFETIME'?" in messages[0]
    assert "'COOKIE'" in messages[1] and "Did you mean 'COOKIES'?" in messages[1]


def test_an_unknown_environment_variable_names_the_closest():
    environ = {
        "AUTHAPI_ACCES_TOKEN_LIFETIME": "5",
        "AUTHAPI_COOKIES": "1",
        "AUTHAPI_TEST_DATABASE": "sqlite",  # the test harness's own
        "PATH": "/usr/bin",
        "AUTHAPIX": "not ours: no underscore",
    }
    assert conf.unknown_environment(environ) == [
        "Environment variable 'AUTHAPI_ACCES_TOKEN_LIFETIME' is not an authapi setting. "
        "Did you mean 'AUTHAPI_ACCESS_TOKEN_LIFETIME'?"
    ]


def test_from_environ_keeps_known_variables_only():
    environ = {"AUTHAPI_ACCES_TOKEN_LIFETIME": "5", "AUTHAPI_LEEWAY": "3", "HOME": "/root"}
    assert conf.from_environ(environ) == {"LEEWAY": "3"}


def test_the_table_is_the_dataclass():
    # Adding a setting is one field declared with conf.setting(): its name is then known.
    names = [f.metadata["name"] for f in fields(conf.AuthSettings)]
    assert tuple(names) == conf.KNOWN
    assert len(set(names)) == len(names)
    for name in ("REDIS_URL", "DATA_DIR", "LOG_FORMAT", "LOG_LEVEL", "MAX_SESSIONS_PER_USER"):
        assert name in conf.KNOWN


def test_every_variable_readme_documents_is_known():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`AUTHAPI_([A-Z0-9_]+)`", table))
    assert documented, "README's configuration table names no AUTHAPI_* variable"
    assert documented <= set(conf.KNOWN), documented - set(conf.KNOWN)


# --- values -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["lots", "1.5", True, 2.5, [1]])
def test_a_count_that_is_no_whole_number_does_not_say_seconds(value):
    with pytest.raises(ImproperlyConfigured) as caught:
        conf.from_mapping({"MAX_SESSIONS_PER_USER": value})
    assert "AUTHAPI_MAX_SESSIONS_PER_USER" in str(caught.value)
    assert "second" not in str(caught.value)


def test_a_count_below_its_minimum_names_both():
    with pytest.raises(ImproperlyConfigured, match="at least 1, not 0"):
        conf.from_mapping({"MAX_SESSIONS_PER_USER": "0"})


def test_lifetimes_take_whole_seconds_or_a_timedelta():
    cfg = conf.from_mapping({"ACCESS_TOKEN_LIFETIME": timedelta(minutes=5), "LEEWAY": 2.0})
    assert (cfg.access_lifetime, cfg.leeway) == (300, 2)
    with pytest.raises(ImproperlyConfigured, match="whole number of seconds"):
        conf.from_mapping({"ACCESS_TOKEN_LIFETIME": timedelta(milliseconds=1500)})


def test_a_lifetime_still_says_seconds():
    with pytest.raises(ImproperlyConfigured, match="whole number of seconds"):
        conf.from_mapping({"ACCESS_TOKEN_LIFETIME": "15m"})


def test_text_from_the_environment_and_python_values_agree():
    from_text = conf.from_mapping({"ACCESS_TOKEN_LIFETIME": " 60 ", "COOKIES": "yes"})
    from_python = conf.from_mapping({"ACCESS_TOKEN_LIFETIME": 60, "COOKIES": True})
    assert from_text == from_python
    assert from_text.access_lifetime == 60 and from_text.cookies is True


def test_defaults():
    cfg = conf.from_mapping({})
    assert (cfg.algorithm, cfg.access_lifetime, cfg.max_sessions) == ("HS256", 900, 100)
    assert cfg.redis_url is None and cfg.data_dir is None
    assert (cfg.log_format, cfg.log_level) == ("text", "INFO")


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://:pw@cache.example:6380/1",
        "unix:///run/valkey.sock",
        "redis+cluster://h1:6379,h2:6379",
        "redis+sentinel://s1:26379/mymaster",
    ],
)
def test_store_urls_of_every_documented_form_pass(url):
    assert conf.from_mapping({"REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize("url", ["http://:hunter2@cache:6379", "127.0.0.1:6379", "redis://"])
def test_a_store_url_of_no_known_form_is_refused_without_echoing_it(url):
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL is not a store URL") as caught:
        conf.from_mapping({"REDIS_URL": url})
    assert "hunter2" not in str(caught.value) and "cache" not in str(caught.value)


def test_the_store_url_is_not_in_the_repr():
    cfg = conf.from_mapping({"REDIS_URL": "redis://:hunter2@cache:6379/0"})
    assert "hunter2" not in repr(cfg)


def test_data_dir_is_a_path():
    assert conf.from_mapping({"DATA_DIR": "/srv/authapi"}).data_dir == Path("/srv/authapi")
    with pytest.raises(ImproperlyConfigured, match="AUTHAPI_DATA_DIR must be a path"):
        conf.from_mapping({"DATA_DIR": 42})


def test_log_settings_are_validated_like_the_rest():
    cfg = conf.from_mapping({"LOG_FORMAT": " JSON ", "LOG_LEVEL": "warning"})
    assert (cfg.log_format, cfg.log_level) == ("json", "WARNING")
    with pytest.raises(ImproperlyConfigured, match="AUTHAPI_LOG_FORMAT has value 'xml'"):
        conf.from_mapping({"LOG_FORMAT": "xml"})
    # LOGGING (built before the apps load) goes through the same parser.
    with pytest.raises(ImproperlyConfigured, match="AUTHAPI_LOG_LEVEL has value 'LOUD'"):
        logs.logging_config("text", "loud")


# --- where the project's settings come in -----------------------------------------------------


async def _closed_old_clients() -> None:
    """A new REDIS_URL closes this loop's clients (store._forget): let that finish here."""
    from authapi import store

    await asyncio.gather(*(asyncio.wrap_future(f) for f in list(store._closing)))


async def test_redis_url_and_data_dir_fall_back_to_the_project_settings(tmp_path):
    with override_settings(AUTHAPI={}, REDIS_URL="redis://fallback:6379/0", DATA_DIR=tmp_path):
        assert conf.redis_url() == "redis://fallback:6379/0"
        assert conf.data_dir() == tmp_path
    own = {"REDIS_URL": "redis://own:6379/0", "DATA_DIR": str(tmp_path / "own")}
    with override_settings(AUTHAPI=own, REDIS_URL="redis://fallback:6379/0"):
        assert conf.redis_url() == "redis://own:6379/0"
        assert conf.data_dir() == tmp_path / "own"
    await _closed_old_clients()


async def test_a_bad_fallback_store_url_is_refused():
    with override_settings(REDIS_URL="localhost:6379"):
        with pytest.raises(ImproperlyConfigured, match="REDIS_URL"):
            conf.redis_url()
        assert [e.id for e in checks.settings_check()] == ["authapi.E001"]
    await _closed_old_clients()


def test_check_and_start_up_refuse_a_misspelt_key():
    with override_settings(AUTHAPI={**settings.AUTHAPI, "ACCES_TOKEN_LIFETIME": 60}):
        found = checks.settings_check()
        assert [e.id for e in found] == ["authapi.E004"]
        assert "ACCESS_TOKEN_LIFETIME" in found[0].msg
        with pytest.raises(SystemCheckError, match="authapi.E004"):
            call_command("check")
        with pytest.raises(ImproperlyConfigured, match="ACCES_TOKEN_LIFETIME"):
            startup.validate()


def test_a_misspelt_key_and_a_bad_value_are_both_reported():
    bad = {**settings.AUTHAPI, "ACCES_TOKEN_LIFETIME": 60, "LEEWAY": "soon"}
    with override_settings(AUTHAPI=bad):
        assert [e.id for e in checks.settings_check()] == ["authapi.E004", "authapi.E001"]


def test_start_up_logs_an_unknown_variable_and_serves(monkeypatch, caplog):
    monkeypatch.setenv("AUTHAPI_ACCES_TOKEN_LIFETIME", "5")  # what validate() itself reads
    startup.validate()
    warned = [r.getMessage() for r in caplog.records if "authapi.W003" in r.getMessage()]
    assert warned and "AUTHAPI_ACCESS_TOKEN_LIFETIME" in warned[0]


# --- in a fresh process: the project's manage.py ----------------------------------------------


def _manage(*args: str, **values: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHAPI_")}
    env.update(
        AUTHAPI_DATA_DIR=tempfile.mkdtemp(prefix="authapi-conf-"),
        DJANGO_SETTINGS_MODULE="project.settings",
        DJANGO_SECRET_KEY="a-test-secret-that-is-long-enough-for-hs256-keys",
        **values,
    )
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_check_warns_about_a_misspelt_environment_variable():
    result = _manage("check", AUTHAPI_ACCES_TOKEN_LIFETIME="5")
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "authapi.W003" in output
    assert "'AUTHAPI_ACCES_TOKEN_LIFETIME'" in output
    assert "Did you mean 'AUTHAPI_ACCESS_TOKEN_LIFETIME'?" in output


def test_check_says_no_issues_with_known_variables():
    result = _manage("check", AUTHAPI_ACCESS_TOKEN_LIFETIME="5")
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr

"""The demo project's outgoing mail (project/mail.py): EMAIL_URL, EMAIL_FILE_PATH, else the
console where something sends mail; a bad URL names the variable, never its password; and
Django's deploy check judges the backend only where users depend on it."""

from __future__ import annotations

import django
import pytest
from django.core.exceptions import ImproperlyConfigured

from project import mail
from tests.test_serving import _check_deploy as serving_check_deploy

SECRET = "k" * 20 + "-production-secret-" + "z9" * 20


def _backend(settings: dict) -> str | None:
    if "MAILERS" in settings:
        return settings["MAILERS"]["default"]["BACKEND"]
    return settings.get("EMAIL_BACKEND")


def _options(settings: dict) -> dict:
    if "MAILERS" in settings:
        return settings["MAILERS"]["default"]["OPTIONS"]
    names = {"EMAIL_HOST": "host", "EMAIL_PORT": "port", "EMAIL_HOST_USER": "username",
             "EMAIL_HOST_PASSWORD": "password", "EMAIL_USE_TLS": "use_tls",
             "EMAIL_USE_SSL": "use_ssl", "EMAIL_TIMEOUT": "timeout",
             "EMAIL_FILE_PATH": "file_path"}  # fmt: skip
    return {option: settings[key] for key, option in names.items() if key in settings}


def test_nothing_set_is_the_console_where_mail_is_sent():
    assert _backend(mail.settings({})) == mail.CONSOLE
    assert _backend(mail.settings({}, sends=True)) == mail.CONSOLE


def test_nothing_set_and_nothing_sent_names_no_backend():
    settings = mail.settings({}, sends=False)
    assert "MAILERS" not in settings and "EMAIL_BACKEND" not in settings
    assert settings["DEFAULT_FROM_EMAIL"] == "authapi <noreply@localhost>"


@pytest.mark.parametrize("sends", [True, False])
def test_an_smtp_url_is_smtp_whether_or_not_anything_sends(sends):
    settings = mail.settings(
        {"EMAIL_URL": "smtp+tls://mailer:p%40ss@mail.example.com:2525?timeout=3"}, sends=sends
    )
    assert _backend(settings) == "django.core.mail.backends.smtp.EmailBackend"
    assert _options(settings) == {
        "host": "mail.example.com", "port": 2525, "username": "mailer", "password": "p@ss",
        "use_tls": True, "use_ssl": False, "timeout": 3,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("url", "port", "tls", "ssl"),
    [("smtp://h", 25, False, False), ("smtp+tls://h", 587, True, False),
     ("smtps://h", 465, False, True), ("smtp+ssl://h", 465, False, True)],
)  # fmt: skip
def test_each_scheme_has_its_port_and_transport(url, port, tls, ssl):
    options = _options(mail.settings({"EMAIL_URL": url}))
    assert (options["port"], options["use_tls"], options["use_ssl"]) == (port, tls, ssl)


def test_a_folder_is_the_file_backend(tmp_path):
    settings = mail.settings({"EMAIL_FILE_PATH": str(tmp_path)}, sends=False)
    assert _backend(settings) == "django.core.mail.backends.filebased.EmailBackend"
    assert _options(settings)["file_path"] == str(tmp_path)


@pytest.mark.parametrize(
    "url",
    ["http://user:hunter2-secret@mail.example.com", "smtp://user:hunter2-secret@",
     "smtp://user:hunter2-secret@h:port", "smtp://user:hunter2-secret@h?timeout=soon"],
)  # fmt: skip
def test_a_bad_url_names_the_variable_and_never_the_password(url):
    with pytest.raises(ImproperlyConfigured) as refused:
        mail.settings({"EMAIL_URL": url})
    assert "EMAIL_URL" in str(refused.value)
    assert "hunter2" not in str(refused.value)


def _check_deploy(**env_vars: str):
    """``check --deploy --fail-level WARNING`` of the documented production environment."""
    production = {"DJANGO_HTTPS": "1", "DJANGO_SECRET_KEY": SECRET,
                  "DJANGO_ALLOWED_HOSTS": "auth.example.com"}  # fmt: skip
    return serving_check_deploy(**production, **env_vars)


def test_production_with_accounts_and_an_smtp_url_passes_check_deploy():
    result = _check_deploy(AUTHAPI_ACCOUNTS="on", EMAIL_URL="smtps://u:p@mail.example.com")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(0 silenced)" in result.stdout


def test_production_with_accounts_mailing_the_console_is_refused_where_django_checks():
    """Django 6.1 refuses a development backend under --deploy (mail.E001); a deployment
    whose signups mail the console would strand its users. 5.2 has no such check."""
    result = _check_deploy(AUTHAPI_ACCOUNTS="on")
    output = result.stdout + result.stderr
    if django.VERSION >= (6, 1):
        assert result.returncode != 0
        assert "mail.E001" in output and "console" in output, output
    else:
        assert result.returncode == 0, output

"""A host project: sessions, CSRF, login required everywhere, an IP guard of its own and the
admin at /backoffice/; authapi installed as README says."""

from tests.settings import *  # noqa: F403

ROOT_URLCONF = "tests.host.urls"
SERVE_APIS = []  # noqa: F405
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "tests.host.views.ip_guard",
]
LOGIN_URL = "/backoffice/login/"
INTERNAL_IPS: list[str] = []  # nobody: the guard refuses /internal/ to every address

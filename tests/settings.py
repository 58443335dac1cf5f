"""The project's settings, with a fast password hasher so the suite is quick.

tests/test_passwords.py switches the real default (PBKDF2) back on for its own tests.
"""

from project.settings import *  # noqa: F403

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
ROOT_URLCONF = "tests.urls"
ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]  # noqa: F405  (schemathesis ASGI client)

"""The project's settings, with a fast password hasher so the suite is quick.

tests/test_passwords.py switches the real default (PBKDF2) back on for its own tests.
"""

from project.settings import *  # noqa: F403

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
ROOT_URLCONF = "tests.urls"
SERVE_APIS = ["tests.urls.demo"]  # project/asgi.py serves this Ninja API on the lean path
ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]  # noqa: F405  (schemathesis ASGI client)
# The suite logs in wrongly from 127.0.0.1 hundreds of times a minute; the per-IP allowance
# has its own tests (test_login_attacks.py), which set it where they need it.
AUTHAPI = {**AUTHAPI, "LOGIN_RATE_PER_IP": "0"}  # noqa: F405

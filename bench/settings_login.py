"""Benchmark settings with Django's real default hasher (PBKDF2), for the login race."""

from bench.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]

"""Settings for the benchmarks: the project, plus the peers installed side by side."""

from project.settings import *  # noqa: F403
from project.settings import INSTALLED_APPS, LOGGING

INSTALLED_APPS = [*INSTALLED_APPS, "rest_framework", "ninja_extra", "ninja_jwt"]
ROOT_URLCONF = "bench.urls"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ALLOWED_HOSTS = ["*"]
LOGGING = {**LOGGING, "loggers": {"authapi": {"level": "WARNING"}}}
REST_FRAMEWORK = {"DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]}

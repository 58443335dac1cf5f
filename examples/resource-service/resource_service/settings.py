"""A service of its own that accepts the auth service's access tokens (authapi.resource).

No database, no ``authapi`` app (only ``authapi.resource``, whose start checks
AUTHAPI_RESOURCE): the tokens are checked against the auth
service's public keys (or HMAC secret) and its store. Configured by environment:

* ``RESOURCE_JWKS_URL`` (asymmetric keys) or ``RESOURCE_SIGNING_KEY`` (+ ``RESOURCE_ALGORITHM``)
* ``RESOURCE_ISSUER``, ``RESOURCE_AUDIENCE``: as the auth service's AUTHAPI_ISSUER / _AUDIENCE
* ``RESOURCE_REDIS_URL`` (the auth service's store), or ``RESOURCE_INTROSPECTION_URL`` with
  ``RESOURCE_CLIENT_ID`` and ``RESOURCE_CLIENT_SECRET``
"""

import os
import secrets
from importlib.util import find_spec

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50)
DEBUG = False
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",")
INSTALLED_APPS = ["authapi.resource"]  # checks AUTHAPI_RESOURCE at start
if find_spec("rest_framework") is not None:
    INSTALLED_APPS.append("rest_framework")
    REST_FRAMEWORK = {"UNAUTHENTICATED_USER": None}  # no django.contrib.auth here
MIDDLEWARE = ["django.middleware.security.SecurityMiddleware"]
ROOT_URLCONF = "resource_service.urls"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

AUTHAPI_RESOURCE = {
    name: os.environ[f"RESOURCE_{name}"]
    for name in (
        "JWKS_URL",
        "SIGNING_KEY",
        "ALGORITHM",
        "ISSUER",
        "AUDIENCE",
        "LEEWAY",
        "REDIS_URL",
        "INTROSPECTION_URL",
        "CLIENT_ID",
        "CLIENT_SECRET",
        "INTROSPECTION_CACHE_SECONDS",
    )
    if os.environ.get(f"RESOURCE_{name}")
}

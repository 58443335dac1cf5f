"""Ours: the project's own settings (environment as scripts/serve reads it), plus the
benchmark's hasher and a urlconf with one claims-only route of a user's own NinjaAPI."""

import os

from project.settings import *  # noqa: F403

ROOT_URLCONF = "ours.urls"
PASSWORD_HASHERS = ["benchhashers.BenchPBKDF2PasswordHasher"]

# /bench/resource: the resource servers' kit, on the same HMAC key and store as the service.
AUTHAPI_RESOURCE = {
    "SIGNING_KEY": os.environ.get("AUTHAPI_SIGNING_KEY", ""),
    "REDIS_URL": os.environ.get("REDIS_URL", ""),
}
# The user's own NinjaAPI, handed to serve() (project/asgi.py) as a host project would.
SERVE_APIS = ["ours.urls.api", "ours.urls.resource"]

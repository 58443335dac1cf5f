"""Ours: the project's own settings (environment as scripts/serve reads it), plus the
benchmark's hasher and a urlconf with one claims-only route of a user's own NinjaAPI."""

from project.settings import *  # noqa: F403

ROOT_URLCONF = "ours.urls"
PASSWORD_HASHERS = ["benchhashers.BenchPBKDF2PasswordHasher"]
# The user's own NinjaAPI, handed to serve() (project/asgi.py) as a host project would.
SERVE_APIS = ["ours.urls.api"]

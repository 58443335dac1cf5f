"""Every path of the contract, to ``include()`` from a project's urls.py::

    urlpatterns = [..., path("", include("authapi.urls"))]

The API under ``api/`` (login, refresh, logout, logout-all, verify, me, sessions, docs,
the simplejwt aliases), the JWKS document, the health check and ``/metrics``.
"""

from __future__ import annotations

from django.urls import path

from authapi import oauth, views
from authapi.api import api

urlpatterns = [
    path("", api.urls),  # /api/..., /health, /.well-known/jwks.json
    path("metrics", views.prometheus, name="metrics"),
    # RFC 8414 3.1: the metadata of an issuer with a path component, after the well-known
    # prefix (the plain /.well-known/oauth-authorization-server is an API operation)
    path(".well-known/oauth-authorization-server/<path:suffix>", oauth.metadata_at_path),
]

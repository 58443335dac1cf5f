"""Every path of the contract, to ``include()`` from a project's urls.py::

    urlpatterns = [..., path("", include("authapi.urls"))]

The API under ``api/`` (login, refresh, logout, logout-all, verify, me, sessions, docs,
the simplejwt aliases), the JWKS document, the health check and ``/metrics``.
"""

from __future__ import annotations

from django.urls import path, re_path

from authapi import oauth, views
from authapi.api import api

# /api/auth/<operation>/: our paths have no trailing slash (the simplejwt aliases' do).
_WITH_SLASH = (
    r"^api/auth/(?:login|refresh|logout|logout-all|verify|me|introspect|revoke"
    r"|sessions(?:/[^/]+)?)/$"
)

urlpatterns = [
    path("", api.urls),  # /api/..., /health, /.well-known/jwks.json
    path("metrics", views.prometheus, name="metrics"),
    re_path(_WITH_SLASH, views.trailing_slash),
    # the docs UI's script and CSS, beside /api/docs: no STATIC_URL needed (views.SwaggerUI)
    path("api/docs/assets/<str:name>", views.docs_asset, name="authapi-docs-asset"),
    # RFC 8414 3.1: the metadata of an issuer with a path component, after the well-known
    # prefix (the plain /.well-known/oauth-authorization-server is an API operation)
    path(".well-known/oauth-authorization-server/<path:suffix>", oauth.metadata_at_path),
]

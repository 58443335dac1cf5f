"""The project's URLs, plus ``/bench/protected``: a user's own NinjaAPI guarded by
``authapi.jwt_bearer`` that answers from the verified claims, with no database query; and
``/bench/resource``: the same route guarded by ``authapi.resource.resource_bearer``, the
check another service runs (settings: ``AUTHAPI_RESOURCE`` in ours/settings.py)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import path
from ninja import NinjaAPI

from authapi.api import install_error_handlers
from authapi.auth import jwt_bearer
from authapi.resource import resource_bearer
from project.urls import handler400, handler403, handler404, handler500, urlpatterns

api = install_error_handlers(
    NinjaAPI(auth=jwt_bearer, urls_namespace="bench", docs_url=None, openapi_url=None)
)


@api.get("/protected")
async def protected(request: HttpRequest) -> dict[str, Any]:
    return {"user_id": request.auth.user_id}  # type: ignore[attr-defined]


resource = install_error_handlers(
    NinjaAPI(auth=resource_bearer, urls_namespace="bench-resource", docs_url=None, openapi_url=None)
)


@resource.get("/resource")
async def resource_route(request: HttpRequest) -> dict[str, Any]:
    return {"user_id": request.auth.user_id}  # type: ignore[attr-defined]


urlpatterns = [*urlpatterns, path("bench/", api.urls), path("bench/", resource.urls)]
__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]

"""The service's API: every route needs a live access token of the auth service."""

from typing import Any

from django.http import HttpRequest
from django.urls import path
from ninja import NinjaAPI

from authapi.resource import install_error_handlers, resource_bearer

api = install_error_handlers(
    NinjaAPI(title="orders", urls_namespace="orders", docs_url=None, auth=resource_bearer)
)


@api.get("/orders")
async def orders(request: HttpRequest) -> dict[str, Any]:
    """The caller's orders; here, who the caller is (claims only, no database)."""
    return {"user_id": request.auth.user_id, "orders": []}  # type: ignore[attr-defined]


@api.get("/claims")
def claims(request: HttpRequest) -> dict[str, Any]:
    """A sync view works too."""
    return dict(request.auth.claims)  # type: ignore[attr-defined]


@api.get("/health", auth=None)
async def health(request: HttpRequest) -> dict[str, str]:
    return {"status": "ok"}


urlpatterns = [path("api/", api.urls)]

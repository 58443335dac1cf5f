"""The service's API: every route needs a live access token of the auth service."""

from importlib.util import find_spec
from typing import Any

from django.http import HttpRequest
from django.urls import path
from ninja import NinjaAPI

from authapi.resource import resource_bearer

# auth=resource_bearer and no other line: a refused token is a 401 {"detail", "code"}.
api = NinjaAPI(title="orders", urls_namespace="orders", docs_url=None, auth=resource_bearer)


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

if find_spec("rest_framework") is not None:  # the DRF flavour of the same route
    from resource_service import drf_views

    urlpatterns.append(path("drf/orders", drf_views.Orders.as_view()))

"""One async route with no auth: what Django plus Ninja under uvicorn can do at most."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import path
from ninja import NinjaAPI

api = NinjaAPI(urls_namespace="bench", docs_url=None, openapi_url=None)


@api.get("/protected")
async def protected(request: HttpRequest) -> dict[str, Any]:
    return {"user_id": 1}


urlpatterns = [path("bench/", api.urls)]

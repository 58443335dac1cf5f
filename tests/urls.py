"""The project's URLs plus a small API guarded by JWTBearer on sync and async views."""

from __future__ import annotations

from django.urls import path
from ninja import NinjaAPI

from authapi.auth import jwt_bearer
from project.urls import handler400, handler403, handler404, handler500, urlpatterns

demo = NinjaAPI(urls_namespace="demo", docs_url=None, auth=jwt_bearer)


@demo.get("/async")
async def async_view(request):
    return {"user_id": request.auth.user_id, "sid": request.auth.sid}


@demo.get("/sync")
def sync_view(request):
    return {"user_id": request.auth.user_id, "sid": request.auth.sid}


urlpatterns = [*urlpatterns, path("demo/", demo.urls)]
__all__ = ["urlpatterns", "handler400", "handler403", "handler404", "handler500"]

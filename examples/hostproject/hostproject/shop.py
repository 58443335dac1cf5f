"""The host project's own API, guarded by authapi's access check: ``auth=jwt_bearer`` and
no other line (a bad token is a 401 ``{"detail", "code"}``, Redis down a 503)."""

from ninja import NinjaAPI

from authapi import jwt_bearer

shop = NinjaAPI(urls_namespace="shop", auth=jwt_bearer)


@shop.get("/orders")
async def orders(request):
    """Claims only: no database query."""
    return {"user_id": request.auth.user_id, "orders": []}


@shop.get("/profile")
async def profile(request):
    user = await request.auth.auser()
    return {"username": user.get_username()}


@shop.get("/basket")
def basket(request):
    """A sync view: the same check, the same answers."""
    return {"user_id": request.auth.user_id, "items": []}

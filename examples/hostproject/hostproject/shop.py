"""The host project's own API, guarded by authapi's access check."""

from ninja import NinjaAPI

from authapi import install_error_handlers, jwt_bearer

shop = install_error_handlers(NinjaAPI(urls_namespace="shop", auth=jwt_bearer))


@shop.get("/orders")
async def orders(request):
    """Claims only: no database query."""
    return {"user_id": request.auth.user_id, "orders": []}


@shop.get("/profile")
async def profile(request):
    user = await request.auth.auser()
    return {"username": user.get_username()}

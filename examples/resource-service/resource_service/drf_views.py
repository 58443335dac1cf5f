"""The same orders for Django REST framework views (when it is installed)."""

from typing import Any

from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from authapi.resource.drf import ResourceAuthentication


class Orders(APIView):
    authentication_classes = [ResourceAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        body: dict[str, Any] = {"user_id": request.auth["user_id"], "orders": []}
        return Response(body)

"""ASGI entry point: ``uvicorn project.asgi:application``."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

django_application = get_asgi_application()

from authapi import metrics, startup  # noqa: E402  (needs the app registry)
from authapi.lifespan import with_lifespan  # noqa: E402
from authapi.limits import RequestLimits  # noqa: E402
from authapi.serving import serve  # noqa: E402

startup.validate()
# The limits come before Django's handler, which reads the whole body before any middleware.
# serve(): no thread started per request, and the API through its own lean middleware.
application = with_lifespan(metrics.instrument(RequestLimits(serve(django_application))))

"""ASGI entry point: ``uvicorn project.asgi:application --ws none``."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

django_application = get_asgi_application()

from django.conf import settings  # noqa: E402
from django.utils.module_loading import import_string  # noqa: E402

from authapi import startup  # noqa: E402  (needs the app registry)
from authapi.asgi.instrument import instrument  # noqa: E402
from authapi.asgi.lifespan import with_lifespan  # noqa: E402
from authapi.asgi.serving import serve  # noqa: E402

startup.validate()
# serve(): the service's own paths through the lean handler (and the request limits), no
# thread started per request; every other path is Django's handler as it comes.
# SERVE_APIS: dotted paths of a project's own NinjaAPI objects to serve the same way.
apis = [import_string(name) for name in getattr(settings, "SERVE_APIS", ())]
application = with_lifespan(instrument(serve(django_application, apis=apis)))

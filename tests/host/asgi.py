"""README's one-liner, and nothing else."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.host.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

import authapi  # noqa: E402

application = authapi.serve(get_asgi_application())

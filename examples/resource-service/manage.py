#!/usr/bin/env python
"""The resource service's manage.py (``python manage.py check``)."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "resource_service.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)

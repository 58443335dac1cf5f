from __future__ import annotations

from django.apps import AppConfig


class AuthApiConfig(AppConfig):
    name = "authapi"
    verbose_name = "JWT auth API"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from authapi import checks, signals

        checks.register()
        signals.connect()

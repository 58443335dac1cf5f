from __future__ import annotations

from django.apps import AppConfig, apps


class AuthApiConfig(AppConfig):
    name = "authapi"
    verbose_name = "JWT auth API"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from authapi import checks, signals

        checks.register()
        signals.connect()
        if apps.is_installed("allauth.account") and apps.is_installed("allauth.headless"):
            from authapi.allauth import receivers  # allauth's flows end our sessions too

            receivers.connect()

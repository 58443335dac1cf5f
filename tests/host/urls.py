from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from tests.host import views

urlpatterns = [
    path("", include("authapi.urls")),
    path("accounts/profile", views.profile),
    path("forms/open", views.open_form),
    path("internal/", views.internal),
    path("backoffice/", admin.site.urls),
]

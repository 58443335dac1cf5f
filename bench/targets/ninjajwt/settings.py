"""django-ninja-jwt, async, with rotation and its blacklist app."""

from benchcommon import *  # noqa: F403
from benchcommon import ACCESS_LIFETIME, REFRESH_LIFETIME, STARTPROJECT_MIDDLEWARE

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "ninja_extra",
    "ninja_jwt",
    "ninja_jwt.token_blacklist",
]
MIDDLEWARE = STARTPROJECT_MIDDLEWARE
ROOT_URLCONF = "ninjajwt.urls"
NINJA_JWT = {
    "ACCESS_TOKEN_LIFETIME": ACCESS_LIFETIME,
    "REFRESH_TOKEN_LIFETIME": REFRESH_LIFETIME,
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
}

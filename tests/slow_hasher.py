from __future__ import annotations

import time

from django.contrib.auth.hashers import MD5PasswordHasher

CHECK_SECONDS = 0.2


class SlowHasher(MD5PasswordHasher):
    """MD5 that takes CHECK_SECONDS per check, the GIL released meanwhile (time.sleep)."""

    algorithm = "slow_md5"

    def verify(self, password: str, encoded: str) -> bool:
        time.sleep(CHECK_SECONDS)
        return super().verify(password, encoded)

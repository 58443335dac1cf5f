"""A password hasher that records which thread hashed, to prove logins hash off the loop."""

from __future__ import annotations

import threading

from django.contrib.auth.hashers import MD5PasswordHasher

threads: list[str] = []


class RecordingHasher(MD5PasswordHasher):
    algorithm = "recording_md5"

    def verify(self, password, encoded):
        threads.append(threading.current_thread().name)
        return super().verify(password, encoded)

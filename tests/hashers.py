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


class GateHasher(MD5PasswordHasher):
    """Holds every password check until the test opens the gate: races made on purpose."""

    algorithm = "gate_md5"
    entered = threading.Event()
    gate = threading.Event()

    def verify(self, password, encoded):
        GateHasher.entered.set()
        GateHasher.gate.wait(timeout=10)
        return super().verify(password, encoded)

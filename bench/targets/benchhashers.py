"""The password hasher of every target: PBKDF2-SHA256 at one fixed, reduced cost.

Django's default algorithm, at ``BENCH_PBKDF2_ITERATIONS`` (run.py sets it, 1,000 unless
told otherwise; Django 5.2's own default is 1,000,000) so a login measures the library and
not the hash. Verification uses the count stored in each hash: the users that only exist
to pre-mint refresh tokens carry a 1-iteration hash and log in cheaply. ``must_update`` is
off, so no target ever re-hashes (and writes) a password during a run.
"""

from __future__ import annotations

import os

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class BenchPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """PBKDF2-SHA256 with the iteration count the benchmark fixes; never upgrades."""

    iterations = int(os.environ.get("BENCH_PBKDF2_ITERATIONS", "1000"))

    def must_update(self, encoded: str) -> bool:
        return False

"""Settings whose password checks take 0.2 s each, off the GIL, as PBKDF2's do: a login
flood then queues on the hashing pool, as on a real deployment."""

from tests.settings import *  # noqa: F403

PASSWORD_HASHERS = ["tests.slow_hasher.SlowHasher", *PASSWORD_HASHERS]  # noqa: F405

"""Make a target's SQLite database: migrate, then the benchmark's users.

    <target venv>/bin/python bench/targets/setup_db.py [--mint-from N --mint-to M]

Run by run.py with the target's ``DJANGO_SETTINGS_MODULE`` and database in the
environment. Users (password ``bench-password`` for all):

* ``bench``: logs in before each ``protected``/``me`` run for a fresh access token;
* ``login-0000``...: the ``login`` scenario cycles through them (hash at the bench cost);
* ``mint-00000``...: pre-mint the single-use refresh tokens (a 1-iteration hash).
"""

from __future__ import annotations

import argparse
import os
import sys

PASSWORD = "bench-password"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--login-users", type=int, default=0)
    parser.add_argument("--mint-from", type=int, default=0)
    parser.add_argument("--mint-to", type=int, default=0)
    parser.add_argument("--migrate", action="store_true")
    args = parser.parse_args()

    import django

    django.setup()
    from benchhashers import BenchPBKDF2PasswordHasher
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    if args.migrate:
        call_command("migrate", verbosity=0, interactive=False)
    model = get_user_model()
    hasher = BenchPBKDF2PasswordHasher()  # every target's PASSWORD_HASHERS[0]
    full = hasher.encode(PASSWORD, hasher.salt())
    cheap = hasher.encode(PASSWORD, hasher.salt(), iterations=1)
    names = {"bench": full}
    names.update({f"login-{i:04d}": full for i in range(args.login_users)})
    names.update({f"mint-{i:05d}": cheap for i in range(args.mint_from, args.mint_to)})
    existing = set(
        model.objects.filter(username__in=list(names)).values_list("username", flat=True)
    )
    model.objects.bulk_create(
        [
            model(username=n, password=h, email=f"{n}@example.com")
            for n, h in names.items()
            if n not in existing
        ],
        batch_size=500,
    )
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    print(f"{len(names) - len(existing)} users added", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "simplejwt.settings")
    main()

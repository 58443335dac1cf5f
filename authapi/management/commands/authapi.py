"""``manage.py authapi``: generate keys, list and revoke a user's sessions."""

from __future__ import annotations

import os
from argparse import ArgumentParser
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from authapi import conf, events, keys, store, throttle, users
from authapi.signals import revoke_user_sync


class Command(BaseCommand):
    help = (
        "authapi tools: genkey, sessions USERNAME, revoke USERNAME (--session=SID | --all), "
        "reference, unlock USERNAME."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        gen = sub.add_parser("genkey", help="Write a new PEM private key (mode 0600).")
        gen.add_argument("--algorithm", default="EdDSA", choices=conf.ALGORITHMS)
        gen.add_argument("--out", help="File to write; default var/keys/<alg>-<date>.pem")
        gen.add_argument("--force", action="store_true", help="Overwrite an existing file.")
        lst = sub.add_parser("sessions", help="List a user's live sessions.")
        lst.add_argument("username")
        rev = sub.add_parser("revoke", help="Revoke one session or all of a user's sessions.")
        rev.add_argument("username")
        which = rev.add_mutually_exclusive_group(required=True)
        which.add_argument("--session", metavar="SID", help="--session=SID: ids may start with -")
        which.add_argument("--all", action="store_true")
        sub.add_parser("reference", help="Print the HTTP reference (docs/http.md) in Markdown.")
        unlock = sub.add_parser(
            "unlock", help="Lift the lock that failed logins put on an account's password logins."
        )
        unlock.add_argument("username")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        getattr(self, f"_{action}")(**options)

    def _genkey(self, algorithm: str, out: str | None, force: bool, **_: Any) -> None:
        from django.conf import settings

        old = conf.get()
        replaced = (
            f"{old.algorithm}:{keys.DERIVED}" if not old.signing_key else "<the key it replaces>"
        )
        if algorithm in conf.HMAC_ALGORITHMS:
            secret = keys.generate_secret(algorithm)
            self.stdout.write(
                f"A new {algorithm} secret. Set it in the environment (it is not saved):\n"
                f"  AUTHAPI_ALGORITHM={algorithm}\n  AUTHAPI_SIGNING_KEY={secret}\n"
                f"  AUTHAPI_PREVIOUS_KEYS={replaced}\n"
                "and keep the key it replaces there until its tokens expire.\n"
            )
            return

        stamp = datetime.now(tz=UTC).strftime("%Y%m%d-%H%M%S")
        path = Path(out) if out else Path(settings.DATA_DIR) / "keys" / f"{algorithm}-{stamp}.pem"
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            raise CommandError(f"{path} exists; pass --force to overwrite it.") from None
        with os.fdopen(fd, "wb") as fh:
            fh.write(keys.generate_private_pem(algorithm))
        os.chmod(path, 0o600)
        self.stdout.write(f"Wrote {algorithm} private key to {path} (mode 0600).\n")
        self.stdout.write("To roll it in without logging anybody out:\n")
        self.stdout.write(f"  AUTHAPI_ALGORITHM={algorithm}\n  AUTHAPI_SIGNING_KEY={path}\n")
        if old.signing_key and old.algorithm == algorithm:
            self.stdout.write(f"  AUTHAPI_PREVIOUS_KEYS={old.signing_key}\n")
        else:
            self.stdout.write(
                f"  AUTHAPI_PREVIOUS_KEYS={replaced}\n"
                "  (an ALG: prefix keeps an earlier key of another algorithm accepted;\n"
                "  ALG:derived is the key derived from DJANGO_SECRET_KEY)\n"
            )
        self.stdout.write(
            "Restart the workers. Drop the old key from AUTHAPI_PREVIOUS_KEYS once its tokens\n"
            "have expired (AUTHAPI_REFRESH_TOKEN_LIFETIME after the switch).\n"
        )

    def _reference(self, **_: Any) -> None:
        from authapi.api import api
        from authapi.reference import render

        self.stdout.write(render(api.get_openapi_schema()), ending="")

    def _user(self, username: str) -> Any:
        model = get_user_model()
        try:
            return model._default_manager.get_by_natural_key(username)
        except model.DoesNotExist:
            raise CommandError(f"No user named {username!r}.") from None

    def _sessions(self, username: str, **_: Any) -> None:
        user = self._user(username)
        uid = users.user_id_of(user)
        rows = store.run_sync(lambda: store.list_sessions(uid))
        if not rows:
            self.stdout.write(f"{username} has no live sessions.\n")
            return
        for s in rows:
            created = datetime.fromtimestamp(s.created_ms / 1000, tz=UTC).isoformat()
            used = datetime.fromtimestamp(s.last_used_ms / 1000, tz=UTC).isoformat()
            self.stdout.write(
                f"{s.sid}  created {created}  last used {used}  ip {s.ip or '-'}  "
                f"agent {s.user_agent or '-'}\n"
            )

    def _revoke(self, username: str, session: str | None, all: bool, **_: Any) -> None:
        user = self._user(username)
        uid = users.user_id_of(user)
        if all:
            count = revoke_user_sync(uid, "operator")
            self.stdout.write(f"Revoked {count} session(s) of {username}.\n")
            return
        assert session is not None
        if not store.run_sync(lambda: store.revoke_session(uid, session)):
            raise CommandError(f"{username} has no live session {session!r}.")
        events.emit_sync("session_revoked", user_id=uid, session_id=session, reason="operator")
        self.stdout.write(f"Revoked session {session} of {username}.\n")

    def _unlock(self, username: str, **_: Any) -> None:
        # Failed logins are counted for any name, existing or not: no user lookup here.
        if store.run_sync(lambda: throttle.unlock(username)):
            self.stdout.write(f"Unlocked {username}: its password logins are accepted again.\n")
        else:
            self.stdout.write(f"{username} was not locked; its failed logins are forgotten.\n")

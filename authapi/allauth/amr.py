"""How a user authenticated, as RFC 8176 ``amr`` values, from allauth's records.

allauth keeps one record per step in the Django session
(:func:`allauth.account.authentication.get_authentication_records`): ``password``,
``mfa`` (of type ``totp``, ``recovery_codes`` or ``webauthn``), ``socialaccount``,
``code`` (a login code by mail). Each step names one method; ``mfa`` is added when the
steps used two different factors.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_MFA_TYPES = {"totp": "otp", "recovery_codes": "otp", "webauthn": "hwk"}
_METHODS = {"password": "pwd", "socialaccount": "fed", "code": "otp"}


def of_records(records: Iterable[dict[str, Any]]) -> tuple[str, ...]:
    """The ``amr`` of a session's authentication records, in the order they happened."""
    values: list[str] = []
    for record in records:
        method = record.get("method")
        value = _MFA_TYPES.get(str(record.get("type"))) if method == "mfa" else None
        value = value or _METHODS.get(str(method))
        if value and value not in values:
            values.append(value)
    if len(values) > 1:  # RFC 8176: "mfa", more than one method used
        values.append("mfa")
    return tuple(values)

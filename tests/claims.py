"""Custom-claims callables for tests (AUTHAPI_CUSTOM_CLAIMS names one of these)."""

from __future__ import annotations

from typing import Any


def roles(user: Any) -> dict[str, Any]:
    return {"roles": ["staff"] if user.is_staff else [], "username": user.get_username()}


def greedy(user: Any) -> dict[str, Any]:
    """Tries to override reserved claims: they must be dropped."""
    return {"user_id": 999999, "sid": "x" * 22, "token_type": "refresh", "exp": 1, "plan": "pro"}


def not_a_dict(user: Any) -> Any:
    return ["nope"]


def not_json(user: Any) -> dict[str, Any]:
    return {"when": object()}

"""The HTTP reference (docs/http.md), rendered from the OpenAPI document so it cannot drift:
``manage.py authapi reference > docs/http.md``; a test compares the two."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HEADER = """# HTTP reference

Generated from the OpenAPI document (`manage.py authapi reference > docs/http.md`); the
test suite fails when the two differ. Every error body is `{"detail", "code"}`.
"""


# What the OpenAPI document does not say: the other paths, the errors, the configuration.
# Hand-written (Markdown), shipped with the templates.
APPENDIX = Path(__file__).parent / "templates" / "authapi" / "http-reference.md"


def _ref(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document.get("components", {}).get("schemas", {}).get(name, {})
    return schema


def _type(schema: dict[str, Any], document: dict[str, Any]) -> str:
    if "$ref" in schema:
        return "`" + str(schema["$ref"]).rsplit("/", 1)[-1] + "`"
    if "anyOf" in schema:
        return " or ".join(_type(s, document) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"list of {_type(schema.get('items', {}), document)}"
    return str(schema.get("type", "any"))


def _fields(schema: dict[str, Any], document: dict[str, Any]) -> list[str]:
    schema = _ref(schema, document)
    required = set(schema.get("required", []))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        prop = _ref(prop, document) if "$ref" in prop and "properties" not in prop else prop
        need = "required" if name in required else "optional"
        note = prop.get("description", "")
        rows.append(f"| `{name}` | {_type(prop, document)} | {need} | {note} |")
    return rows


def render(document: dict[str, Any]) -> str:
    """Markdown for every operation of ``document``: body fields, answers, auth."""
    out = [HEADER]
    for path, operations in document.get("paths", {}).items():
        for method, op in operations.items():
            out.append(f"## `{method.upper()} {path}`\n")
            if op.get("summary"):
                out.append(op["summary"] + ".\n")
            if op.get("security"):
                out.append("Needs `Authorization: Bearer <access token>`.\n")
            body = op.get("requestBody", {}).get("content", {})
            if body:
                media = ", ".join(f"`{m}`" for m in body)
                out.append(f"Body ({media}):\n")
                schema = next(iter(body.values()))["schema"]
                out.append("| field | type | | |\n|---|---|---|---|")
                out.extend(_fields(schema, document))
                example = next(iter(body.values())).get("example")
                if example:
                    out.append(f"\nExample: `{json.dumps(example)}`")
                out.append("")
            out.append("| status | body |\n|---|---|")
            for status, answer in op.get("responses", {}).items():
                content = answer.get("content", {}).get("application/json", {})
                shape = _type(content["schema"], document) if content else "(empty)"
                out.append(f"| {status} | {shape} |")
            out.append("")
    schemas = document.get("components", {}).get("schemas", {})
    if schemas:
        out.append("## Schemas\n")
    for name, schema in schemas.items():
        out.append(f"### `{name}`\n")
        out.append("| field | type | | |\n|---|---|---|---|")
        out.extend(_fields(schema, document))
        out.append("")
    out.append(APPENDIX.read_text())
    return "\n".join(out).rstrip() + "\n"

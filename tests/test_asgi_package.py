"""authapi/asgi/ is one package with one boundary: it imports nothing from ``schemas`` or
``store``, nothing else in authapi imports from it, and its ASGI aliases are its own."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "authapi"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_asgi_package_needs_neither_schemas_nor_store():
    for path in (PACKAGE / "asgi").glob("*.py"):
        bad = {
            m
            for m in _imports(path)
            if m.split(".")[:2] in (["authapi", "schemas"], ["authapi", "store"])
        }
        assert not bad, (path.name, bad)


def test_nothing_else_in_the_package_imports_it():
    for path in PACKAGE.rglob("*.py"):
        if "asgi" in path.relative_to(PACKAGE).parts or path == PACKAGE / "__init__.py":
            continue  # (authapi.serve loads it lazily: the one public door)
        assert not {m for m in _imports(path) if m.startswith("authapi.asgi")}, path


def test_one_set_of_asgi_aliases_and_one_body_limit():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if path.name != "types.py":
            assert "Receive = Callable" not in text and "Send = Callable" not in text, path
        if path.name != "errors.py":
            assert "16 * 1024\n" not in text.replace("MAX_HEADER_BYTES = 16 * 1024", ""), path

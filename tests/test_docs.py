"""The docs UI works offline, the OpenAPI document tells the whole truth, errors stay JSON."""

from __future__ import annotations

import re

import pytest
from django.test import override_settings

AUTH_PATHS = ["/api/auth/login", "/api/auth/refresh", "/api/auth/logout", "/api/auth/verify"]
BEARER_PATHS = [
    ("post", "/api/auth/logout-all"),
    ("get", "/api/auth/me"),
    ("get", "/api/auth/sessions"),
    ("delete", "/api/auth/sessions/{sid}"),
]


async def test_docs_page_loads_only_local_assets(client):
    response = await client.get("/api/docs")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    for asset in assets:
        # beside the page, served by the app itself: no STATIC_URL needed under uvicorn
        assert asset.startswith("/api/docs/assets/"), f"{asset} is not served by us"
        fetched = await client.get(asset)
        assert fetched.status_code == 200, asset
        assert fetched.content, asset


async def test_only_the_docs_files_are_served_as_docs_assets(client):
    for name in ("swagger-ui.css", "swagger-ui-bundle.js", "favicon.png"):
        response = await client.get(f"/api/docs/assets/{name}")
        assert response.status_code == 200 and response.content, name
    assert "css" in (await client.get("/api/docs/assets/swagger-ui.css")).headers["Content-Type"]
    for name in ("redoc.standalone.js", "..%2F..%2F__init__.py", "swagger-ui.css.map", "x"):
        response = await client.get(f"/api/docs/assets/{name}")
        assert response.status_code == 404 and response.json()["code"] == "not_found", name
    posted = await client.post("/api/docs/assets/swagger-ui.css")
    assert posted.status_code == 405 and posted.json()["code"] == "method_not_allowed"


async def test_static_files_are_served_with_debug_off(client):
    from django.conf import settings

    assert settings.DEBUG is False
    response = await client.get("/static/ninja/swagger-ui-bundle.js")
    assert response.status_code == 200
    assert "javascript" in response.headers["Content-Type"]


async def test_missing_static_file_is_json_404(client):
    response = await client.get("/static/ninja/nope.js")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.fixture
async def spec(client):
    response = await client.get("/api/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    return document


async def test_bearer_scheme_is_declared(spec):
    schemes = spec["components"]["securitySchemes"]
    bearer = [s for s in schemes.values() if s.get("scheme") == "bearer"]
    assert bearer and bearer[0]["type"] == "http"
    for method, path in BEARER_PATHS:
        operation = spec["paths"][path][method]
        assert operation["security"], path
        assert {"401", "503"} <= set(operation["responses"]), path


@pytest.mark.parametrize("path", AUTH_PATHS)
async def test_bodies_document_both_content_types(spec, path):
    content = spec["paths"][path]["post"]["requestBody"]["content"]
    assert {"application/json", "application/x-www-form-urlencoded"} <= set(content)


@pytest.mark.parametrize("path", AUTH_PATHS)
async def test_error_responses_are_documented(spec, path):
    responses = spec["paths"][path]["post"]["responses"]
    assert {"400", "401", "413", "422", "503"} <= set(responses)
    error = responses["401"]["content"]["application/json"]["schema"]
    name = error["$ref"].rsplit("/", 1)[-1]
    assert {"detail", "code"} <= set(spec["components"]["schemas"][name]["properties"])


async def test_login_documents_throttling(spec):
    assert "429" in spec["paths"]["/api/auth/login"]["post"]["responses"]


@pytest.mark.parametrize("path", ["/api/token/", "/api/token/refresh/", "/api/token/verify/"])
async def test_simplejwt_aliases_are_documented(spec, path):
    assert "post" in spec["paths"][path]


async def test_every_operation_has_a_summary_and_unique_id(spec):
    ids = [op["operationId"] for item in spec["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    for item in spec["paths"].values():
        for operation in item.values():
            assert operation.get("summary")


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/nowhere", 404),
        ("get", "/api/nowhere", 404),
        ("get", "/api/auth/login", 405),
        ("put", "/api/auth/refresh", 405),
        ("post", "/health", 405),
        ("get", "/api/auth/sessions/../../etc/passwd", 404),
    ],
)
async def test_errors_are_json_never_html(client, debug, method, path, status):
    with override_settings(DEBUG=debug):
        response = await client.request(method, path)
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    assert set(response.json()) >= {"detail", "code"}
    assert "<html" not in response.text.lower()


async def test_disallowed_host_is_json_400(client):
    response = await client.get("/health", headers={"Host": "evil.example"})
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["code"] == "bad_request"


async def test_health(client):
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "ok"}


async def test_try_it_out_shows_the_readme_user(client):
    schema = (await client.get("/api/openapi.json")).json()
    body = schema["paths"]["/api/auth/login"]["post"]["requestBody"]["content"]
    for media in ("application/json", "application/x-www-form-urlencoded"):
        assert body[media]["example"] == {"username": "alice", "password": "s3cret-pass"}
    refresh = schema["paths"]["/api/auth/refresh"]["post"]["requestBody"]["content"]
    assert refresh["application/json"]["example"]["refresh"].startswith("eyJ")


def test_the_http_reference_is_the_openapi_document():
    """docs/http.md is generated; regenerate with `manage.py authapi reference`."""
    from authapi.api import api
    from authapi.reference import render
    from tests.conftest import ROOT

    assert (ROOT / "docs" / "http.md").read_text() == render(api.get_openapi_schema())


async def test_health_and_jwks_are_in_the_openapi_document(client):
    paths = (await client.get("/api/openapi.json")).json()["paths"]
    assert set(paths["/health"]) == {"get"}
    assert set(paths["/.well-known/jwks.json"]) == {"get"}
    assert {"200", "503"} <= set(paths["/health"]["get"]["responses"])


def _table_names(text: str, heading: str) -> set[str]:
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", section, flags=re.MULTILINE)) | set(
        re.findall(r"^\| `[A-Z_]+`, `([A-Z][A-Z0-9_]+)`", section, flags=re.MULTILINE)
    )


def test_the_http_reference_is_complete():
    """docs/http.md, the reference README links, holds every path, error and variable."""
    from authapi import conf
    from tests.conftest import ROOT

    reference = (ROOT / "docs" / "http.md").read_text()
    readme = (ROOT / "README.md").read_text()
    variables = _table_names(reference, "\n## Configuration")
    assert variables == _table_names(readme, "\n## Configuration")
    for name in conf.KNOWN:
        assert f"AUTHAPI_{name}" in variables or name in variables, name
    endpoints = readme.split("\n## Endpoints", 1)[1].split("\n## ", 1)[0]
    for method, path in re.findall(r"^\| `([A-Z]+) ([^`]+)`", endpoints, flags=re.MULTILINE):
        path = path.replace("{id}", "{sid}")
        assert f"`{method} {path}`" in reference, (method, path)
    errors = reference.split("\n## Errors", 1)[1].split("\n## ", 1)[0]
    for status in (400, 401, 403, 404, 405, 408, 413, 415, 422, 429, 431, 503):
        assert f"| {status} |" in errors, status
    assert "docs/http.md" in readme and "team's shared folder" not in readme

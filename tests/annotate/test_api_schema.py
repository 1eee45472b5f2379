"""The OpenAPI schema and docs page describe the whole contract and work offline."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_schema_lists_the_contract_endpoints(client):
    response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/api/v1/projects/",
        "/api/v1/projects/{slug}/",
        "/api/v1/projects/{slug}/tasks/next/",
        "/api/v1/assignments/{assignment_id}/submit/",
        "/api/v1/assignments/{assignment_id}/skip/",
    ):
        assert path in paths
    assert "TokenAuth" in str(response.json()["components"]["securitySchemes"]) or "tokenAuth" in str(
        response.json()["components"]["securitySchemes"]
    )


def test_docs_page_loads_swagger_from_our_static_files(client):
    body = client.get("/api/v1/docs/").content.decode()
    assert "swagger-ui" in body
    assert "cdn.jsdelivr.net" not in body and "unpkg.com" not in body


def test_the_submit_body_lists_the_14_category_keys_as_an_enum(client):
    from annotate.categories import CATEGORY_KEYS

    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    body = schema["components"]["schemas"]["SubmitInputRequest"]["properties"]["categories"]
    items = body["items"]
    if "$ref" in items:  # drf-spectacular names an enum component
        items = schema["components"]["schemas"][items["$ref"].rsplit("/", 1)[1]]
    assert items["enum"] == list(CATEGORY_KEYS)

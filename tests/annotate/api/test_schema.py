"""The OpenAPI document: valid, warning-free, and listing every route of the API's URLconf; the docs page
serves Swagger UI from our own static files."""

import re

import pytest
import yaml
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from rewardlab.api_urls import urlpatterns
from tests.annotate.api.test_permissions import routes

pytestmark = pytest.mark.django_db

NOT_IN_SCHEMA = {"schema", "docs", "not-found"}


def test_the_schema_validates_without_warnings(tmp_path):
    path = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))
    assert yaml.safe_load(path.read_text())["openapi"].startswith("3.")


def openapi_path(route: str) -> str:
    """`projects/<slug:slug>/tasks/` -> `/api/projects/{slug}/tasks/`"""
    return "/api/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


def test_the_schema_lists_every_route_and_method():
    document = APIClient().get(reverse("api:schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    listed = {(path, method) for path, item in document["paths"].items() for method in item}
    by_name = {pattern.name: str(pattern.pattern) for pattern in urlpatterns}
    expected = {(openapi_path(by_name[name]), method) for name, method in routes() if name not in NOT_IN_SCHEMA}
    assert expected == listed


def test_every_operation_documents_its_responses_and_error_body():
    document = APIClient().get(reverse("api:schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            codes = set(operation["responses"])
            assert any(code.startswith("2") for code in codes), (path, method)
            for code in codes - {"200", "201", "204"}:
                schema = operation["responses"][code]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, code)
            if method in ("post", "put", "patch"):
                assert "requestBody" in operation, (path, method)


def test_the_docs_page_loads_swagger_ui_from_local_static_files():
    client = APIClient()
    response = client.get(reverse("api:docs"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "<script>" not in html  # the start-up script comes from a URL (no inline script for a CSP to allow)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and not [url for url in assets if url.startswith(("http:", "https:", "//"))]
    for url in assets:
        asset = client.get(url)
        assert asset.status_code == 200, url
        if url.startswith("/static/"):  # the sidecar's files, and our stylesheet for the page (no inline style)
            assert "drf_spectacular_sidecar/swagger-ui-dist/" in url or url == "/static/css/swagger.css"

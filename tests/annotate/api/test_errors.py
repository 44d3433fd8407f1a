"""Every error has the same body: {"error": {"code", "message", "fields"}}."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from tests.annotate.api.conftest import error_of, token_client

pytestmark = pytest.mark.django_db


def test_a_validation_error_names_its_fields(as_admin, imported):
    task_id = imported.tasks.first().pk
    response = as_admin.patch(reverse("api:task-priority", args=[task_id]), {"priority": "high"}, format="json")
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid"
    assert error["message"] == "priority: A valid number is required."
    assert error["fields"] == {"priority": ["A valid number is required."]}


def test_nested_validation_errors_say_where(as_admin, imported):
    url = reverse("api:task-priority-bulk", args=[imported.slug])
    response = as_admin.post(url, {"priorities": [{"task": 1, "priority": 1}, {"task": "x"}]}, format="json")
    error = error_of(response)
    assert response.status_code == 400
    assert error["message"].startswith("priorities.1.task: ")
    assert set(error["fields"]["priorities"]["1"]) == {"task", "priority"}


def test_malformed_json_is_a_parse_error(as_admin, imported):
    task_id = imported.tasks.first().pk
    response = as_admin.generic(
        "PATCH", reverse("api:task-priority", args=[task_id]), b"{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "parse_error"


def test_a_missing_role_is_403(as_labeler, imported):
    response = as_labeler.get(reverse("api:task-list", args=[imported.slug]))
    assert response.status_code == 403
    assert error_of(response) == {
        "code": "permission_denied",
        "message": "You do not have permission to perform this action.",
        "fields": {},
    }


def test_an_unknown_object_is_404(as_researcher):
    response = as_researcher.get(reverse("api:project-detail", args=["no-such-project"]))
    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "not_found"
    assert "Project" in error["message"]


def test_an_unknown_address_under_api_is_a_json_404(as_researcher):
    for path in ["/api/", "/api/nothing/here/", "/api/projects"]:
        response = as_researcher.get(path)
        assert response.status_code == 404, path
        assert error_of(response)["code"] == "not_found"


def test_a_wrong_method_is_405(as_researcher):
    response = as_researcher.delete(reverse("api:project-list"))
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


def test_a_wrong_content_type_is_415(as_admin, imported):
    response = as_admin.post(reverse("api:prompt-import", args=[imported.slug]), b"x", content_type="text/csv")
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_too_many_requests_are_throttled_with_retry_after(settings, researcher):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "2/minute", "user": "3/minute"},
    }
    # Anonymous requests count where anonymous callers may go at all (signing in, the schema, the docs).
    anonymous = APIClient()
    statuses = [anonymous.post(reverse("api:token"), {}).status_code for _ in range(3)]
    assert statuses == [400, 400, 429]

    client = token_client(researcher)
    statuses = [client.get(reverse("api:me")).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = client.get(reverse("api:me"))
    assert int(response["Retry-After"]) > 0
    error = error_of(response)
    assert error["code"] == "throttled"
    assert "throttled" in error["message"]

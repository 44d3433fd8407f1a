"""Projects over the API: lists by role, the overview, and the all-or-nothing prompt import."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotate import services
from annotate.models import ImportSource, Message, Task
from tests.annotate.api.conftest import ROWS, error_of
from tests.conftest import jsonl

pytestmark = pytest.mark.django_db

LIST_URL = reverse("api:project-list")


@pytest.fixture
def archived(db):
    return services.project_create(name="Old project", slug="old", is_active=False)


def test_a_labeler_sees_active_projects_with_their_own_queue_counts(as_labeler, labeler, imported, archived):
    services.task_lease_next(labeler=labeler, project=imported, kinds=["rate"])
    projects = as_labeler.get(LIST_URL).json()
    assert [p["slug"] for p in projects] == [imported.slug]
    (project,) = projects
    # 3 prompts x 4 candidates: 3 demonstrations, 3 rankings, 6 pairs, 12 ratings (one of them leased to lena)
    assert project["queue"] == {"demonstrate": 3, "rank": 3, "compare": 6, "rate": 11}
    assert project["live_assignment"] is not None
    assert project["flags"][0] == {"key": "fails_instruction", "label": "Fails to follow the instruction"}


def test_a_researcher_sees_every_project_without_queues(as_researcher, imported, archived):
    projects = as_researcher.get(LIST_URL).json()
    assert [(p["slug"], p["is_active"]) for p in projects] == [(imported.slug, True), (archived.slug, False)]
    assert all(p["queue"] is None for p in projects)


def test_an_admin_sees_every_project_and_queues_where_they_can_label(as_admin, imported, archived):
    projects = {p["slug"]: p for p in as_admin.get(LIST_URL).json()}
    assert projects[imported.slug]["queue"]["rank"] == 3
    assert projects[archived.slug]["queue"] is None


def test_the_overview_counts_prompts_tasks_and_judgements(as_researcher, imported, labeler):
    assignment = services.task_lease_next(labeler=labeler, project=imported, kinds=["rate"])
    services.rating_submit(labeler=labeler, assignment_id=assignment.pk, score=5, client_token="t")
    overview = as_researcher.get(reverse("api:project-detail", args=[imported.slug])).json()
    assert overview["prompts"] == 3
    assert overview["candidates"] == 12
    assert overview["tasks_by_kind"] == {"demonstrate": 3, "rank": 3, "compare": 6, "rate": 12}
    assert overview["annotations_by_kind"] == {"demonstrate": 0, "rank": 0, "compare": 0, "rate": 1}
    assert overview["overlap"] == {"demonstrate": 1, "rank": 2, "compare": 3, "rate": 1}
    assert overview["imports"][0]["name"] == "p.jsonl"


# --- import -------------------------------------------------------------------------------------------------


def import_url(project) -> str:
    return reverse("api:prompt-import", args=[project.slug])


def test_an_admin_imports_a_multipart_upload(as_admin, admin_user, project):
    upload = SimpleUploadedFile("prompts.jsonl", jsonl(*ROWS), content_type="application/jsonl")
    response = as_admin.post(import_url(project), {"file": upload}, format="multipart")
    assert response.status_code == 201, response.content
    result = response.json()
    assert result["rows"] == 3
    assert result["prompts_created"] == 3
    assert result["candidates_created"] == 12
    assert result["tasks_created"] == {"demonstrate": 3, "rank": 3, "compare": 6, "rate": 12}
    assert result["import_source"]["name"] == "prompts.jsonl"
    assert result["import_source"]["imported_by"] == admin_user.username


def test_an_admin_imports_a_raw_jsonl_body_and_a_repeat_adds_nothing(as_admin, project):
    url = import_url(project) + "?filename=batch-7.jsonl"
    first = as_admin.generic("POST", url, jsonl(*ROWS), content_type="application/x-ndjson")
    assert first.status_code == 201
    assert ImportSource.objects.get().name == "batch-7.jsonl"
    again = as_admin.generic("POST", url, jsonl(*ROWS), content_type="application/jsonl").json()
    assert again["prompts_created"] == 0 and again["prompts_existing"] == 3
    assert again["tasks_created"] == {"demonstrate": 0, "rank": 0, "compare": 0, "rate": 0}
    assert Task.objects.count() == 24


def test_a_bad_file_imports_nothing_and_lists_every_problem(as_admin, project):
    data = jsonl(
        {"prompt": "Fine.", "completions": ["a", "b"]},
        {"messages": [{"role": "bot", "content": "hi"}]},
        b"{not json",
        {"prompt": "", "completions": ["x"]},
    )
    response = as_admin.generic("POST", import_url(project), data, content_type="application/jsonl")
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "import_invalid"
    assert error["message"] == "3 problem(s) in the file; nothing was imported."
    assert [(p["line"], p["field"]) for p in error["problems"]] == [(2, "messages[0].role"), (3, ""), (4, "prompt")]
    assert "unknown role 'bot'" in error["problems"][0]["message"]
    assert "malformed JSON" in error["problems"][1]["message"]
    assert Message.objects.count() == 0 and ImportSource.objects.count() == 0


def test_an_upload_without_a_file_is_a_validation_error(as_admin, project):
    response = as_admin.post(import_url(project), {}, format="multipart")
    assert response.status_code == 400
    assert error_of(response)["fields"] == {"file": ["No file was submitted."]}

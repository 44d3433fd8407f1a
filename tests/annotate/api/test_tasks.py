"""Tasks over the API: the paginated, filtered list, one task with its texts, and priorities."""

import pytest
from django.urls import reverse

from annotate import services
from annotate.models import Task
from tests.annotate.api.conftest import error_of

pytestmark = pytest.mark.django_db


def tasks_url(project, **params) -> str:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return reverse("api:task-list", args=[project.slug]) + (f"?{query}" if query else "")


def test_the_task_list_is_paginated_in_serving_order(as_researcher, imported):
    Task.objects.filter(pk=Task.objects.filter(kind="rate").order_by("id").last().pk).update(priority=9)
    page = as_researcher.get(tasks_url(imported, page_size=10)).json()
    assert page["count"] == 24
    assert len(page["results"]) == 10
    assert page["previous"] is None and "page=2" in page["next"]
    assert page["results"][0]["priority"] == 9
    last = as_researcher.get(tasks_url(imported, page_size=10, page=3)).json()
    assert len(last["results"]) == 4 and last["next"] is None
    seen = {
        t["id"]
        for p in (1, 2, 3)
        for t in as_researcher.get(tasks_url(imported, page_size=10, page=p)).json()["results"]
    }
    assert len(seen) == 24


def test_the_page_size_is_capped(as_researcher, imported, settings):
    settings.REWARDLAB_API_MAX_PAGE_SIZE = 5
    assert len(as_researcher.get(tasks_url(imported, page_size=1000)).json()["results"]) == 5


def test_a_page_past_the_end_is_a_404_with_the_error_body(as_researcher, imported):
    response = as_researcher.get(tasks_url(imported, page=99))
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_tasks_filter_by_kind_gold_activity_openness_and_priority(as_researcher, imported, make_user):
    rank = Task.objects.filter(project=imported, kind="rank").order_by("id")
    first, second, third = rank
    services.tasks_set_priority(priorities={first.pk: 5, second.pk: 1})
    Task.objects.filter(pk=third.pk).update(is_active=False)
    labeler = make_user("labeler")
    services.task_lease_next(labeler=labeler, project=imported, kinds=["demonstrate"])  # overlap 1: now full

    def ids(**params):
        return [t["id"] for t in as_researcher.get(tasks_url(imported, **params)).json()["results"]]

    assert ids(kind="rank") == [first.pk, second.pk, third.pk]
    assert ids(kind="rank", is_active="false") == [third.pk]
    assert ids(kind="rank", min_priority=1) == [first.pk, second.pk]
    assert ids(kind="rank", is_gold="true") == []
    assert len(ids(kind="demonstrate", open="true")) == 2
    assert len(ids(kind="demonstrate", open="false")) == 1


def test_an_unknown_filter_value_is_a_400(as_researcher, imported):
    response = as_researcher.get(tasks_url(imported, kind="essay"))
    assert response.status_code == 400
    assert "kind" in error_of(response)["fields"]


def test_the_task_list_costs_the_same_queries_for_any_page_size(as_researcher, imported, django_assert_num_queries):
    # token, user and the roles they hold (1), project (1), count (1), page (1), candidate ids (1)
    with django_assert_num_queries(5):
        assert len(as_researcher.get(tasks_url(imported, page_size=3)).json()["results"]) == 3
    with django_assert_num_queries(5):
        assert len(as_researcher.get(tasks_url(imported, page_size=24)).json()["results"]) == 24


def test_a_task_comes_with_its_conversation_and_candidates(as_researcher, imported):
    task = Task.objects.filter(project=imported, kind="rank").order_by("id").first()
    data = as_researcher.get(reverse("api:task-detail", args=[task.pk])).json()
    assert data["kind"] == "rank"
    assert [m["role"] for m in data["conversation"]] == ["user"]
    assert data["conversation"][0]["text"] == "Question 0?"
    assert [c["text"] for c in data["candidates"]] == ["Answer 0a", "Answer 0b", "Answer 0c", "Answer 0d"]
    assert data["candidates"][0]["author"] == "import"
    assert data["required_labelers"] == 2 and data["taken"] == 0


def test_an_unknown_task_is_a_404(as_researcher, db):
    response = as_researcher.get(reverse("api:task-detail", args=[999999]))
    assert response.status_code == 404
    assert error_of(response)["message"] == "No task with this id."


def test_an_admin_sets_one_task_priority(as_admin, imported):
    task = imported.tasks.first()
    response = as_admin.patch(reverse("api:task-priority", args=[task.pk]), {"priority": 7.5}, format="json")
    assert response.status_code == 200
    assert response.json()["priority"] == 7.5
    task.refresh_from_db()
    assert task.priority == 7.5
    missing = as_admin.patch(reverse("api:task-priority", args=[999999]), {"priority": 1}, format="json")
    assert missing.status_code == 404


def test_bulk_priorities_are_all_or_nothing_within_the_project(as_admin, imported):
    other = services.project_create(name="Other", slug="other")
    services.prompts_import(project=other, data=b'{"prompt": "Elsewhere?"}\n', filename="o.jsonl")
    foreign = other.tasks.get()
    mine = list(imported.tasks.order_by("id").values_list("id", flat=True)[:3])
    url = reverse("api:task-priority-bulk", args=[imported.slug])

    body = {"priorities": [{"task": mine[0], "priority": 3}, {"task": foreign.pk, "priority": 3}]}
    response = as_admin.post(url, body, format="json")
    assert response.status_code == 400
    assert error_of(response)["fields"] == {"priorities": [f"Not tasks of this project: {foreign.pk}."]}
    assert not Task.objects.filter(priority=3).exists()

    body = {"priorities": [{"task": task_id, "priority": float(n)} for n, task_id in enumerate(mine, start=1)]}
    assert as_admin.post(url, body, format="json").json() == {"updated": 3}
    assert list(Task.objects.filter(pk__in=mine).order_by("id").values_list("priority", flat=True)) == [1, 2, 3]


def test_a_priority_must_be_a_finite_number(as_admin, imported):
    task = imported.tasks.first()
    response = as_admin.patch(reverse("api:task-priority", args=[task.pk]), {"priority": "Infinity"}, format="json")
    assert response.status_code == 400


def test_researchers_see_the_serving_reward_models_scores_and_labelers_do_not(
    as_researcher, as_labeler, imported, tmp_path
):
    from training.models import CandidateScore, ModelVersion

    task = Task.objects.filter(project=imported, kind="rank").order_by("id").first()
    ids = list(task.task_candidates.order_by("position").values_list("message_id", flat=True))
    url = reverse("api:task-detail", args=[task.pk])
    assert {c["reward_score"] for c in as_researcher.get(url).json()["candidates"]} == {None}
    version = ModelVersion.objects.create(
        project=imported, kind="reward", version=1, base_model="x", artifact_path=str(tmp_path), status="serving"
    )
    CandidateScore.objects.bulk_create(
        CandidateScore(model_version=version, message_id=m, score=float(i)) for i, m in enumerate(ids)
    )
    candidates = as_researcher.get(url).json()["candidates"]
    assert [c["reward_score"] for c in candidates] == [float(i) for i in range(len(ids))]
    lease = as_labeler.post(reverse("api:lease", args=[imported.slug]), {"kinds": ["rank"]}, format="json")
    assert lease.status_code == 200 and "reward" not in lease.content.decode()

"""API: retraining cycles (researchers read, admins start) and the model leaderboard."""

from __future__ import annotations

import pytest

from annotate.models import Message, Task
from tests.annotate.api.conftest import token_client
from tests.training.conftest import simulated_project
from training.models import ModelKind, ModelVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def taught(make_user, artifacts):
    return simulated_project(make_user, "Taught", ["demonstrate", "rank", "compare"], tasks_each=18)


@pytest.fixture
def judged(make_user, artifacts):
    return simulated_project(make_user, "Judged", ["rank", "compare"], tasks_each=20)


@pytest.fixture
def no_broker(monkeypatch):
    sent = []
    monkeypatch.setattr("training.queue.run_send", lambda run_id, task_id: sent.append((run_id,)))
    return sent


def test_an_admin_starts_a_cycle_and_researchers_follow_it(taught, admin_user, researcher, no_broker):
    waiting = token_client(admin_user).post(
        f"/api/projects/{taught.slug}/cycles/", {"use_thresholds": True}, format="json"
    )
    assert waiting.status_code == 400 and "24 of 200 new preference judgements" in waiting.json()["error"]["message"]
    started = token_client(admin_user).post(f"/api/projects/{taught.slug}/cycles/")
    assert started.status_code == 201, started.json()
    body = started.json()
    assert body["stages"] == ["reward", "sft", "ppo", "sample"] and body["stage"] == "reward"
    assert [run["kind"] for run in body["runs"]] == ["reward"] and body["runs"][0]["status"] == "queued"
    again = token_client(admin_user).post(f"/api/projects/{taught.slug}/cycles/")
    assert again.status_code == 409 and again.json()["error"]["code"] == "cycle_running"
    listed = token_client(researcher).get(f"/api/projects/{taught.slug}/cycles/")
    assert listed.status_code == 200 and [c["id"] for c in listed.json()] == [body["id"]]


def test_nothing_new_to_train_on_is_a_clear_400(project, admin_user):
    response = token_client(admin_user).post(f"/api/projects/{project.slug}/cycles/")
    assert response.status_code == 400 and "Nothing new to train on" in response.json()["error"]["message"]


def test_the_leaderboard_ranks_versions_by_their_head_to_head_judgements(judged, researcher):
    """Replace the candidates of the judged project's A/B tasks by replies of two versions, so its comparisons
    become battles between them."""
    v1, v2 = (
        ModelVersion.objects.create(project=judged, kind=ModelKind.POLICY, version=n, base_model="x") for n in (1, 2)
    )
    for task in Task.objects.filter(project=judged, kind="compare"):
        a, b = (tc.message_id for tc in task.task_candidates.order_by("position"))
        Message.objects.filter(pk=a).update(author_import=None, author_model=v1)
        Message.objects.filter(pk=b).update(author_import=None, author_model=v2)
    board = token_client(researcher).get(f"/api/projects/{judged.slug}/leaderboard/").json()
    assert board["battles"] > 0 and board["rounds"] == 1000
    assert sorted(row["label"] for row in board["rows"]) == ["policy-v1", "policy-v2"]
    for row in board["rows"]:
        assert (
            row["low"] <= row["rating"] <= row["high"] and row["wins"] + row["losses"] + row["ties"] == row["battles"]
        )
    assert abs(sum(row["rating"] for row in board["rows"]) / 2 - 1000) < 1e-6

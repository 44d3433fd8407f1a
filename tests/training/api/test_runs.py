"""API: starting runs goes through the one `services.run_start`, as the pages do: a bad config value or an input the
run's kind does not take is a 400 naming its field."""

from __future__ import annotations

import pytest

from tests.annotate.api.conftest import token_client
from tests.training.conftest import simulated_project, tiny_config
from training.models import ModelKind, ModelVersion, TrainingRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def judged(make_user, artifacts):
    return simulated_project(make_user, "Judged", ["rank", "compare"], tasks_each=20)


@pytest.fixture
def no_broker(monkeypatch):
    sent = []
    monkeypatch.setattr("training.queue.run_send", lambda run_id, task_id: sent.append((run_id,)))
    return sent


def start(user, project, **body):
    return token_client(user).post(f"/api/projects/{project.slug}/runs/", body, format="json")


def fields(response) -> dict:
    return response.json()["error"]["fields"]


def test_an_admin_starts_a_reward_run_with_defaults_filled_in(judged, admin_user, no_broker):
    response = start(admin_user, judged, kind="reward", config=tiny_config("tiny"), imported="exclude")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["kind"] == "reward" and body["status"] == "queued" and body["config"]["max_length"] == 64
    assert body["config"]["learning_rate"] == 5e-5  # the config's default
    run = TrainingRun.objects.get()
    assert run.snapshot.filter["imported"] == "exclude"


def test_a_bad_config_value_is_a_400_on_its_field(judged, admin_user, no_broker):
    response = start(admin_user, judged, kind="reward", config={"eval_share": 1.0})
    assert response.status_code == 400
    assert fields(response) == {"eval_share": ["eval_share must be < 1.0, got 1.0"]}
    response = start(admin_user, judged, kind="dpo", config={"max_length": 64, "max_prompt_length": 64})
    assert response.status_code == 400 and list(fields(response)) == ["max_prompt_length"]
    assert not TrainingRun.objects.exists()


def test_an_input_the_kind_does_not_take_is_refused(judged, admin_user, no_broker, tmp_path):
    policy = ModelVersion.objects.create(
        project=judged, kind=ModelKind.POLICY, version=1, base_model="x", artifact_path=str(tmp_path)
    )
    response = start(admin_user, judged, kind="reward", base_version=policy.pk)
    assert response.status_code == 400
    assert fields(response) == {"base_version": ["A Reward model run does not take base_version."]}
    response = start(admin_user, judged, kind="sft", imported="only")
    assert response.status_code == 400 and list(fields(response)) == ["imported"]
    assert not TrainingRun.objects.exists()

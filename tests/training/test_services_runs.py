"""Runs and the model registry: start, claim, cancel, fail, register, promote, roll back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.training.conftest import tiny_config
from training import datasets, selectors, services
from training.models import CandidateScore, ModelKind, ModelStatus, ModelVersion, RunStatus, TrainingRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(judged, admin_user, tiny_backbone, django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr("training.queue.run_send", lambda run_id, task_id: sent.append(((run_id,), task_id)))
    with django_capture_on_commit_callbacks(execute=True):
        run = services.run_start(
            kind="reward", project=judged, config=tiny_config(tiny_backbone), created_by=admin_user
        )
    return run, sent


def test_starting_a_reward_run_freezes_its_dataset_and_queues_it_after_commit(queued):
    run, sent = queued
    assert run.status == RunStatus.QUEUED and run.kind == "reward"
    assert sent == [((run.pk,), run.celery_task_id)]
    assert run.snapshot.filter["dataset"] == "preferences" and run.snapshot.filter["ties"] == "drop"
    pairs = list(datasets.reward_pairs(run.snapshot))
    assert pairs and {p["kind"] for p in pairs} <= {"ranking", "comparison"}
    assert run.config["max_length"] == 64 and "learning_rate" in run.config  # defaults filled in


def test_a_bad_config_names_its_field(judged):
    with pytest.raises(services.RunError) as error:
        services.run_start(kind="reward", project=judged, config={"learning_rate": -1})
    assert error.value.field == "learning_rate" and not TrainingRun.objects.exists()


def test_a_project_without_pairs_cannot_train(project, artifacts):
    with pytest.raises(services.RunError, match="0 preference pairs") as error:
        services.run_start(kind="reward", project=project, config={})
    assert error.value.field == "dataset" and not TrainingRun.objects.exists()


def test_run_start_refuses_an_unknown_kind_and_inputs_the_kind_does_not_take(judged):
    with pytest.raises(services.RunError) as error:
        services.run_start(kind="rlhf", project=judged, config={})
    assert error.value.field == "kind"
    policy = ModelVersion(project=judged, kind=ModelKind.POLICY, version=1, base_model="x")
    for kind, inputs in [("reward", {"base_version": policy}), ("sample", {"snapshot": object()}),
                         ("sft", {"opponent_version": policy}), ("dpo", {"imported": "only"})]:  # fmt: skip
        with pytest.raises(services.RunError) as error:
            services.run_start(kind=kind, project=judged, config={}, **inputs)
        [name] = inputs
        assert error.value.field == name and f"does not take {name}" in error.value.message
    assert not TrainingRun.objects.exists()


def test_a_run_is_claimed_once(queued):
    run, _ = queued
    claimed = services.run_claim(run_id=run.pk, worker="w1")
    assert claimed.status == RunStatus.RUNNING and claimed.worker == "w1" and claimed.heartbeat_at
    assert services.run_claim(run_id=run.pk, worker="w2") is None


def test_cancelling_a_queued_run_ends_it_and_a_worker_then_skips_it(queued):
    run, _ = queued
    services.run_cancel(run=run)
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.finished_at
    assert services.run_claim(run_id=run.pk, worker="w1") is None


def test_cancelling_a_running_run_asks_the_trainer_to_stop(queued):
    run, _ = queued
    services.run_claim(run_id=run.pk, worker="w1")
    services.run_cancel(run=run)
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and run.cancel_requested


def test_a_silent_run_is_failed_and_its_leftovers_removed(queued):
    run, _ = queued
    services.run_claim(run_id=run.pk, worker="w1")
    final = services.run_output_dir(run)
    leftover = final.parent / f".tmp-{final.name}-123"
    leftover.mkdir(parents=True)
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=10))
    assert services.runs_fail_stale(timeout_seconds=60) == 1
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "stopped responding" in run.error
    assert not leftover.exists() and not ModelVersion.objects.exists()
    assert services.runs_fail_stale(timeout_seconds=60) == 0


def test_a_restarted_worker_fails_the_runs_it_was_running(queued):
    run, _ = queued
    services.run_claim(run_id=run.pk, worker="gpu-1")
    assert services.runs_fail_on_worker(worker="gpu-2") == 0
    assert services.runs_fail_on_worker(worker="gpu-1") == 1
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "restarted" in run.error


def register(run, tmp_path, name: str) -> ModelVersion:
    services.run_claim(run_id=run.pk, worker="w")
    checkpoint = tmp_path / name
    checkpoint.mkdir()
    return services.model_version_register(run=run, checkpoint=checkpoint, metrics={"eval_accuracy": 0.8}, history=[])


def second_run(run) -> TrainingRun:
    return TrainingRun.objects.create(project=run.project, kind="reward", config=run.config, snapshot=run.snapshot)


def test_a_finished_run_registers_numbered_versions(queued, tmp_path):
    run, _ = queued
    first = register(run, tmp_path, "a")
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.output_version == first and first.version == 1
    assert first.kind == ModelKind.REWARD and first.metrics == {"eval_accuracy": 0.8}
    assert register(second_run(run), tmp_path, "b").version == 2


def test_only_a_running_run_registers(queued, tmp_path):
    run, _ = queued
    with pytest.raises(services.RunError, match="not running"):
        services.model_version_register(run=run, checkpoint=tmp_path, metrics={}, history=[])
    assert not ModelVersion.objects.exists()


def test_promote_and_roll_back(queued, tmp_path, django_capture_on_commit_callbacks, monkeypatch):
    run, _ = queued
    scored = []
    monkeypatch.setattr("training.queue.scores_send", scored.append)
    v1, v2 = register(run, tmp_path, "a"), register(second_run(run), tmp_path, "b")
    with django_capture_on_commit_callbacks(execute=True):
        services.model_version_promote(version=v1)
        services.model_version_promote(version=v2)
    assert scored == [v1.pk, v2.pk]
    statuses = dict(ModelVersion.objects.values_list("version", "status"))
    assert statuses == {1: ModelStatus.READY, 2: ModelStatus.SERVING}
    assert services.model_version_rollback(project=run.project, kind="reward") == v1
    assert selectors.serving_version(project=run.project, kind="reward") == v1
    with pytest.raises(services.RunError, match="No version before reward-v1 has served"):
        services.model_version_rollback(project=run.project, kind="reward")


def test_a_version_without_its_checkpoint_cannot_serve(queued, tmp_path):
    run, _ = queued
    version = register(run, tmp_path, "gone")
    (tmp_path / "gone").rmdir()
    with pytest.raises(services.RunError, match="no checkpoint on disk"):
        services.model_version_promote(version=version)


class LengthScorer:
    """Stands in for a reward model: longer replies score higher."""

    def score(self, prompts, replies):
        return [float(len(reply)) for reply in replies]


def test_candidates_are_scored_once_and_live_accuracy_uses_later_judgements(judged, tmp_path, make_user):
    version = ModelVersion.objects.create(
        project=judged, kind="reward", version=1, base_model="x", artifact_path=str(tmp_path), metrics={}
    )
    ModelVersion.objects.filter(pk=version.pk).update(created_at=timezone.now() - timedelta(days=1))
    version.refresh_from_db()
    scored = services.candidate_scores_compute(version=version, scorer=LengthScorer())
    assert scored == CandidateScore.objects.count() == 36
    assert services.candidate_scores_compute(version=version, scorer=LengthScorer()) == 0
    live = selectors.live_accuracy(version=version)
    assert live.pairs > 0 and live.scored == live.pairs and 0 <= live.accuracy <= 1
    # Judgements made before the model was trained do not count.
    ModelVersion.objects.filter(pk=version.pk).update(created_at=timezone.now())
    version.refresh_from_db()
    assert selectors.live_accuracy(version=version) == selectors.LiveAccuracy(accuracy=None, pairs=0, scored=0)

"""Sampling runs and active selection: the serving policy writes new candidates for the prompts that need them,
which become ranking and A/B tasks (head-to-head against the policy that served before), prioritised where the
serving reward model is least sure."""

from __future__ import annotations

import math

import pytest

from annotate import services as annotate_services
from annotate.models import ActiveSelection, Message, Task, TaskKind
from annotate.roles import RoleName
from tests.conftest import jsonl
from tests.training.conftest import SAMPLE_TINY, SFT_TINY, execute
from training import runner, selectors, services
from training.models import CandidateScore, ModelKind, ModelStatus, ModelVersion, RunKind, RunStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def serving_policy(sft_version):
    return services.model_version_promote(version=sft_version)


def test_a_sampling_run_turns_new_replies_into_ranking_and_ab_tasks(taught, serving_policy, serving_reward, admin_user):
    run = services.run_start(kind="sample", project=taught, config=SAMPLE_TINY, created_by=admin_user)
    assert run.kind == RunKind.SAMPLE and run.base_version == serving_policy and run.reward_version == serving_reward
    assert run.opponent_version is None  # no policy served before this one
    run = execute(run)
    written = Message.objects.filter(project=taught, author_model=serving_policy)
    assert written.count() == run.metrics["candidates"] > 0 and all(m.metadata == {"run": run.pk} for m in written)
    for anchor_id in written.values_list("parent_id", flat=True).distinct():
        texts = list(Message.objects.filter(parent_id=anchor_id).values_list("text", flat=True))
        assert len(texts) == len(set(texts))  # nothing repeats a reply the prompt has
    tasks = Task.objects.filter(origin_run=run)
    assert tasks.filter(kind=TaskKind.RANK).count() == run.metrics["rank_tasks"] > 0
    assert tasks.filter(kind=TaskKind.COMPARE).count() == run.metrics["compare_tasks"]
    for task in tasks:
        candidates = list(task.candidates.all())
        assert {c.author_model_id for c in candidates} == {serving_policy.pk} and 2 <= len(candidates) <= 3
    # Active selection: every new candidate is scored and each task's priority follows the documented rule.
    scores = dict(CandidateScore.objects.filter(model_version=serving_reward).values_list("message_id", "score"))
    assert set(written.values_list("pk", flat=True)) <= set(scores)
    for task in tasks:
        expected = services.task_priority(taught.active_selection, [scores[c.pk] for c in task.candidates.all()])
        assert task.priority == pytest.approx(expected) and 0 < task.priority <= 1
    # The new tasks are in a labeler's queue, the least sure first.
    labeler = annotate_services.user_create_with_role(username="fresh", password="x" * 12, role=RoleName.LABELER)
    lease = annotate_services.task_lease_next(labeler=labeler, project=taught, kinds=[TaskKind.RANK])
    top = tasks.filter(kind=TaskKind.RANK).order_by("-priority", "created_at", "id").first()
    assert lease.task == top
    assert "ranking" in run.log_tail and run.status == RunStatus.SUCCEEDED and run.output_version is None


def test_the_new_policy_meets_the_one_that_served_before_head_to_head(taught, sft_version, admin_user):
    services.model_version_promote(version=sft_version)
    newer = execute(
        services.run_start(kind="sft", project=taught, config=SFT_TINY, base_version=sft_version)
    ).output_version
    services.model_version_promote(version=newer)
    run = services.run_start(kind="sample", project=taught, config=SAMPLE_TINY, created_by=admin_user)
    assert run.base_version == newer and run.opponent_version == sft_version
    run = execute(run)
    head_to_head = [
        task
        for task in Task.objects.filter(origin_run=run, kind=TaskKind.COMPARE)
        if {c.author_model_id for c in task.candidates.all()} == {newer.pk, sft_version.pk}
    ]
    assert len(head_to_head) == run.metrics["head_to_head_tasks"] > 0
    sides = {task.task_candidates.get(position=0).message.author_model_id for task in head_to_head}
    assert len(head_to_head) < 4 or sides == {newer.pk, sft_version.pk}  # the sides are shuffled
    assert all(t.priority == 0 for t in head_to_head)  # no reward model serving: oldest first


def test_sampling_needs_a_policy_and_prompts_that_need_candidates(taught, sft_version, admin_user):
    with pytest.raises(services.RunError) as error:
        services.run_start(kind="sample", project=taught, config=SAMPLE_TINY)
    assert error.value.field == "base_version" and "No policy is serving" in error.value.message
    services.model_version_promote(version=sft_version)
    with pytest.raises(services.RunError) as error:
        services.run_start(kind="sample", project=taught, config={**SAMPLE_TINY, "temperature": 0})
    assert error.value.field == "temperature"
    run = services.run_start(kind="sample", project=taught, config=SAMPLE_TINY)
    with pytest.raises(services.RunError, match="queued or running"):
        services.run_start(kind="sample", project=taught, config=SAMPLE_TINY)
    execute(run)
    with pytest.raises(services.RunError) as error:  # policy-v1 has written replies to all 12 prompts
        services.run_start(kind="sample", project=taught, config=SAMPLE_TINY)
    assert error.value.field == "dataset" and "No prompt needs candidates from policy-v1" in error.value.message


def test_a_crashed_sampling_run_adds_no_candidates_and_no_tasks(taught, sft_version, monkeypatch):
    services.model_version_promote(version=sft_version)
    run = services.run_start(kind="sample", project=taught, config=SAMPLE_TINY)
    before = (Message.objects.count(), Task.objects.count())

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("annotate.bulk.insert", crash)  # the task candidates, once the tasks are written
    assert runner.run_execute(run_id=run.pk, worker="test@host") == RunStatus.FAILED
    run.refresh_from_db()
    assert "disk full" in run.error and (Message.objects.count(), Task.objects.count()) == before


# --- active selection ------------------------------------------------------------------------------------------


def test_the_priority_rule_by_hand():
    assert services.uncertainty(0.0) == 1.0
    assert services.uncertainty(2.0) == pytest.approx(1 - math.tanh(1.0))  # 0.2384
    assert services.uncertainty(-2.0) == services.uncertainty(2.0)
    scores = [0.0, 0.1, 3.0]
    assert services.task_priority(ActiveSelection.CLOSEST_PAIR, scores) == pytest.approx(1 - math.tanh(0.05))
    mean = (3 - math.tanh(0.05) - math.tanh(1.5) - math.tanh(1.45)) / 3
    assert services.task_priority(ActiveSelection.MEAN_PAIR, scores) == pytest.approx(mean)
    assert services.task_priority(ActiveSelection.OFF, scores) == 0.0
    assert services.task_priority(ActiveSelection.CLOSEST_PAIR, [0.0, None]) == 0.0


def test_on_simulated_data_the_uncertain_pairs_are_served_first(project, make_user, settings, tmp_path):
    """40 A/B tasks whose replies a serving reward model scores with gaps from 0 to 4: a labeler is served the
    ten with the smallest gaps first, where before active selection they came oldest first."""
    settings.REWARDLAB_ARTIFACTS_DIR = str(tmp_path)
    project.import_task_kinds = ["compare"]
    project.save()
    rows = [{"prompt": f"Question {i}?", "completions": [f"Answer {i}a", f"Answer {i}b"]} for i in range(40)]
    annotate_services.prompts_import(project=project, data=jsonl(*rows), filename="pairs.jsonl")
    reward = ModelVersion.objects.create(
        project=project, kind=ModelKind.REWARD, version=1, base_model="test", status=ModelStatus.SERVING
    )
    gaps = {i: ((i * 7) % 40) / 10 for i in range(40)}  # a permutation of 0.0, 0.1 … 3.9 across the prompts
    for task in Task.objects.filter(project=project).prefetch_related("task_candidates"):
        a, b = (tc.message_id for tc in task.task_candidates.all())
        i = int(Message.objects.get(pk=task.anchor_id).text.split()[1].rstrip("?"))
        CandidateScore.objects.create(model_version=reward, message_id=a, score=0.5)
        CandidateScore.objects.create(model_version=reward, message_id=b, score=0.5 + gaps[i])
    labeler = make_user(RoleName.LABELER)
    assert services.tasks_prioritize(project=project) == 40
    served = []
    for _ in range(10):
        lease = annotate_services.task_lease_next(labeler=labeler, project=project)
        served.append(gaps[int(lease.task.anchor.text.split()[1].rstrip("?"))])
        annotate_services.task_skip(labeler=labeler, assignment_id=lease.pk, reason="unclear")
    assert served == sorted(gaps.values())[:10]


def test_prompts_needing_candidates_come_without_open_preference_tasks_first(project, tmp_path):
    project.import_task_kinds = ["demonstrate", "rank"]
    project.save()
    rows = [{"prompt": "Open?", "completions": ["a", "b"]}, {"prompt": "Only a demo task?"}, {"prompt": "Done?"}]
    annotate_services.prompts_import(project=project, data=jsonl(*rows), filename="p.jsonl")
    texts = lambda ids: [Message.objects.get(pk=pk).text for pk in ids]  # noqa: E731
    assert texts(selectors.prompts_needing_candidates(project=project, limit=10)) == [
        "Only a demo task?", "Done?", "Open?",
    ]  # fmt: skip
    version = ModelVersion.objects.create(project=project, kind=ModelKind.POLICY, version=1, base_model="x")
    done = Message.objects.get(text="Done?")
    Message.objects.create(
        project=project, parent=done, role="assistant", text="mine", depth=1, path_hash="h", author_model=version
    )
    needing = selectors.prompts_needing_candidates(project=project, limit=10, version=version)
    assert texts(needing) == ["Only a demo task?", "Open?"]


def test_promoting_a_reward_model_reprioritises_the_open_tasks(project, settings, tmp_path, monkeypatch):
    """The scoring task that follows a promotion scores every candidate, then sets the open tasks' priorities."""
    from training import tasks

    project.import_task_kinds = ["compare"]
    project.save()
    rows = [{"prompt": f"Q{i}?", "completions": ["short", "a much longer answer" * (i + 1)]} for i in range(3)]
    annotate_services.prompts_import(project=project, data=jsonl(*rows), filename="q.jsonl")
    reward = ModelVersion.objects.create(
        project=project, kind=ModelKind.REWARD, version=1, base_model="test", status=ModelStatus.SERVING
    )

    class LengthScorer:  # a reward model that likes long replies: the gap grows with the longer reply
        def score(self, prompts, replies):
            return [len(reply) / 20 for reply in replies]

    monkeypatch.setattr("training.services._scorer_for", lambda version: LengthScorer())
    assert tasks.candidate_scores_compute(reward.pk) == 6
    priorities = list(Task.objects.filter(project=project).order_by("anchor_id").values_list("priority", flat=True))
    assert priorities == sorted(priorities, reverse=True) and priorities[0] > priorities[-1] > 0

"""The retraining cycle: thresholds start it, each stage is a run started when the one before passed, versions
that pass their checks are promoted, a failure stops the chain, and one project never runs two cycles at once."""

from __future__ import annotations

import pytest

from annotate.models import Message, Task
from tests.training.conftest import DPO_TINY, PPO_TINY, SAMPLE_TINY, SFT_TINY, tiny_config
from training import cycles, runner, services
from training.models import CycleStatus, ModelStatus, RetrainCycle, RunKind, RunStatus, TrainingRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def retraining(taught, tiny_backbone, no_broker):
    """The taught project (24 preference judgements, 12 demonstrations) with retraining on and tiny run configs."""
    taught.retrain_enabled = True
    taught.retrain_min_comparisons = 10
    taught.retrain_min_demonstrations = 5
    # Simulated labelers follow a hidden quality per reply that its text does not show, so a reward model cannot
    # learn it: the accuracy check is tested on its own (test_version_checks) and off here.
    taught.retrain_min_reward_accuracy = 0.0
    taught.retrain_run_configs = {
        "reward": tiny_config(tiny_backbone),
        "sft": SFT_TINY,
        "ppo": PPO_TINY,
        "dpo": {**DPO_TINY, "eval_share": 0.0},  # no held-out pairs: random preferences would fail its check
        "sample": SAMPLE_TINY,
    }
    taught.save()
    return taught


def run_cycle(cycle: RetrainCycle) -> RetrainCycle:
    """Play the worker: run each stage's run in this process until the cycle ends."""
    for _ in range(len(cycle.stages)):
        cycle.refresh_from_db()
        if cycle.status != CycleStatus.RUNNING:
            break
        run = cycle.runs.get(kind=cycle.stage_kind)
        runner.run_execute(run_id=run.pk, worker="test@host")
    cycle.refresh_from_db()
    return cycle


def test_crossing_the_thresholds_runs_reward_sft_ppo_then_sampling(retraining):
    data = cycles.new_data(retraining)
    assert data.preferences >= 10 and data.demonstrations >= 5
    assert cycles.cycles_tick() == {"advanced": 0, "started": 1}
    cycle = RetrainCycle.objects.get(project=retraining)
    assert cycle.stages == ["reward", "sft", "ppo", "sample"] and "Thresholds crossed" in cycle.reason
    assert cycles.cycles_tick() == {"advanced": 0, "started": 0}  # one cycle at a time
    cycle = run_cycle(cycle)
    assert cycle.status == CycleStatus.SUCCEEDED, cycle.error
    runs = {run.kind: run for run in cycle.runs.all()}
    assert set(runs) == {"reward", "sft", "ppo", "sample"}
    assert all(run.status == RunStatus.SUCCEEDED for run in runs.values())
    reward, sft, ppo = (runs[k].output_version for k in ("reward", "sft", "ppo"))
    # Each version passed its checks and was promoted; PPO started from the SFT policy the cycle promoted, against
    # the reward model it promoted; sampling used the PPO policy, then serving.
    assert reward.status == ModelStatus.SERVING and ppo.status == ModelStatus.SERVING
    assert runs["ppo"].base_version == sft and runs["ppo"].reward_version == reward
    assert runs["sample"].base_version == ppo and runs["sample"].opponent_version == sft
    new_tasks = Task.objects.filter(origin_run=runs["sample"])
    assert new_tasks.exists() and all(
        c.author_model_id in (ppo.pk, sft.pk) for task in new_tasks for c in task.candidates.all()
    )
    assert Message.objects.filter(author_model=ppo).count() == runs["sample"].metrics["candidates"]
    assert len(cycle.outcome.splitlines()) == 4 and "now serves" in cycle.outcome
    # Nothing new since: the next tick starts nothing.
    assert cycles.new_data(retraining).preferences == 0
    assert cycles.cycles_tick() == {"advanced": 0, "started": 0}


def test_a_failed_stage_stops_the_chain_and_says_why(retraining):
    retraining.retrain_run_configs = {**retraining.retrain_run_configs, "sft": {**SFT_TINY, "max_length": 100_000}}
    retraining.retrain_min_comparisons = 1000  # SFT only
    retraining.save()
    cycle = cycles.cycle_start(project=retraining)
    assert cycle.stages == ["sft", "sample"]
    cycle = run_cycle(cycle)
    assert cycle.status == CycleStatus.FAILED and cycle.finished_at is not None
    assert cycle.error.startswith("SFT run #") and "failed" in cycle.error
    assert list(cycle.runs.values_list("kind", flat=True)) == ["sft"]  # no sampling run was started
    assert not TrainingRun.objects.filter(kind=RunKind.SAMPLE).exists()


def test_a_stage_that_cannot_start_ends_the_cycle(retraining):
    """DPO after the reward model, but nothing to start PPO from: the PPO stage cannot start (no SFT policy)."""
    retraining.retrain_min_demonstrations = 1000  # no SFT in this cycle
    retraining.save()
    cycle = run_cycle(cycles.cycle_start(project=retraining))
    assert cycle.stages == ["reward", "ppo", "sample"] and cycle.status == CycleStatus.FAILED
    assert "PPO stage could not start" in cycle.error and "run SFT first" in cycle.error


def test_an_admin_can_start_a_cycle_with_any_new_data_but_never_two(retraining, admin_user):
    retraining.retrain_min_comparisons = retraining.retrain_min_demonstrations = 1000
    retraining.retrain_enabled = False
    retraining.save()
    with pytest.raises(cycles.CycleError, match="not crossed"):
        cycles.cycle_start(project=retraining)
    assert cycles.cycles_tick() == {"advanced": 0, "started": 0}
    cycle = cycles.cycle_start(project=retraining, started_by=admin_user)
    assert cycle.stages == ["reward", "sft", "ppo", "sample"] and "Started by" in cycle.reason
    with pytest.raises(cycles.CycleError, match="already running"):
        cycles.cycle_start(project=retraining, started_by=admin_user)
    assert RetrainCycle.objects.filter(project=retraining).count() == 1


def test_the_tick_advances_a_cycle_whose_run_was_cancelled_in_the_queue(retraining):
    cycle = cycles.cycle_start(project=retraining)
    run = cycle.runs.get()
    services.run_cancel(run=run)
    assert cycles.cycles_tick()["advanced"] == 1
    cycle.refresh_from_db()
    assert cycle.status == CycleStatus.FAILED and "cancelled" in cycle.error


def test_stopping_a_cycle_cancels_its_run(retraining):
    cycle = cycles.cycle_start(project=retraining)
    cycles.cycle_stop(cycle=cycle)
    cycle.refresh_from_db()
    assert cycle.status == CycleStatus.FAILED and cycle.error == "Stopped by an admin."
    assert cycle.runs.get().status == RunStatus.CANCELLED


@pytest.mark.parametrize(
    ("kind", "metrics", "problem"),
    [
        ("reward", {"eval_accuracy": 0.4}, "held-out accuracy 0.400 < 0.500"),
        ("reward", {"eval_accuracy": 0.5}, None),
        ("reward", {"eval_accuracy": None}, None),
        ("sft", {"eval_loss": float("nan")}, "held-out loss is not finite"),
        ("ppo", {"reward_mean_last": 1.0, "kl_last": 31.0}, "KL to the starting policy 31.00 > 30.00"),
        ("ppo", {"reward_mean_last": 1.0, "kl_last": 3.0}, None),
        ("dpo", {"eval_reward_accuracy": 0.25}, "only 25% of held-out pairs"),
    ],
)
def test_version_checks(project, kind, metrics, problem):
    run = TrainingRun(project=project, kind=kind, metrics=metrics)
    problems = cycles.version_checks(run)
    assert (problem in problems[0]) if problem else problems == []


def test_new_data_counts_labelers_judgements_since_the_last_models_data(retraining, admin_user):
    assert cycles.new_data(retraining) == cycles.NewData(preferences=24, demonstrations=12)
    reward = services.run_start(kind="reward", project=retraining, config=retraining.retrain_run_configs["reward"])
    runner.run_execute(run_id=reward.pk, worker="test@host")
    assert cycles.new_data(retraining) == cycles.NewData(preferences=0, demonstrations=12)


def test_a_dpo_project_runs_dpo_after_the_new_reward_model(retraining):
    retraining.retrain_policy_method = "dpo"
    retraining.save()
    cycle = run_cycle(cycles.cycle_start(project=retraining))
    assert cycle.stages == ["reward", "sft", "dpo", "sample"] and cycle.status == CycleStatus.SUCCEEDED, cycle.error
    dpo = cycle.runs.get(kind="dpo")
    assert dpo.base_version == cycle.runs.get(kind="sft").output_version
    assert cycle.runs.get(kind="sample").base_version == dpo.output_version

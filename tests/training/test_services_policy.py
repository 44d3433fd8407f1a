"""Policy runs (SFT, DPO, PPO): starting them checks their inputs and freezes their data; the runner trains them
and registers policy versions with their lineage."""

from __future__ import annotations

from pathlib import Path

import pytest

from annotate import exports
from tests.training.conftest import DPO_TINY, PPO_TINY, SFT_TINY, execute
from training import datasets, runner, services
from training.models import ModelKind, RunKind, RunStatus, TrainingRun

pytestmark = pytest.mark.django_db


def test_sft_freezes_the_demonstrations_and_registers_the_first_policy(taught, sft_version):
    run = sft_version.training_run
    assert run.kind == RunKind.SFT and run.snapshot.filter["dataset"] == "sft"
    records = list(datasets.sft_records(run.snapshot))
    assert len(records) == datasets.snapshot_rows(run.snapshot) >= 2
    assert records[0]["turns"][-1]["role"] == "user" and records[0]["reply"].startswith("A careful reply")
    assert sft_version.kind == ModelKind.POLICY and sft_version.version == 1 and sft_version.parent is None
    assert sft_version.base_model == "embedded:tiny-gpt2"
    assert Path(sft_version.artifact_path, "rewardlab_policy.json").is_file()
    assert run.metrics_history and run.progress_step == run.progress_total
    assert "Registered policy-v1" in run.log_tail


def test_ppo_starts_from_the_newest_sft_policy_against_the_serving_reward_model(
    taught, admin_user, sft_version, serving_reward
):
    run = services.run_start(kind="ppo", project=taught, config=PPO_TINY, created_by=admin_user)
    assert run.base_version == sft_version and run.reward_version == serving_reward
    assert run.snapshot.filter["dataset"] == "prompts" and run.config["base_model"] == "embedded:tiny-gpt2"
    prompts = list(datasets.ppo_prompts(run.snapshot))
    assert len(prompts) == 12 and prompts[0]["reward_prompt"] == "How do I fix problem 0?"
    assert prompts[0]["turns"] == [{"role": "user", "content": "How do I fix problem 0?"}]
    run = execute(run)
    version = run.output_version
    assert version.version == 2 and version.parent == sft_version and version.base_model == "embedded:tiny-gpt2"
    assert version.training_run.reward_version == serving_reward
    for key in ("reward_mean", "kl", "kl_coef", "entropy", "clip_fraction", "value_loss"):
        assert all(key in row for row in run.metrics_history), key
    assert version.metrics["samples"] == 2 * 4


def test_dpo_starts_from_the_newest_sft_policy(taught, admin_user, sft_version):
    run = execute(services.run_start(kind="dpo", project=taught, config=DPO_TINY, created_by=admin_user))
    assert run.base_version == sft_version and run.output_version.parent == sft_version
    assert run.snapshot.filter["dataset"] == "preferences" and run.snapshot.filter["style"] == "conversational"
    pair = next(datasets.dpo_pairs(run.snapshot))
    assert set(pair) == {"turns", "chosen", "rejected", "weight"}
    assert "reward_margin" in run.metrics_history[-1]


def test_ppo_needs_a_serving_reward_model_and_a_fine_tuned_policy(taught, admin_user, no_broker, tiny_backbone):
    with pytest.raises(services.RunError) as error:
        services.run_start(kind="ppo", project=taught, config=PPO_TINY)
    assert error.value.field == "base_version" and "run SFT first" in error.value.message
    with pytest.raises(services.RunError) as error:
        services.run_start(kind="ppo", project=taught, config={**PPO_TINY, "base_model": "gpt2"})
    assert error.value.field == "reward_version" and "No reward model is serving" in error.value.message
    assert not TrainingRun.objects.exists()


def test_bad_configs_and_versions_name_their_field(taught, no_broker, judged, sft_version):
    with pytest.raises(services.RunError) as error:
        services.run_start(kind="sft", project=taught, config={"lora_r": -1})
    assert error.value.field == "lora_r"
    with pytest.raises(services.RunError) as error:
        services.run_start(kind="ppo", project=taught, config={"cliprange": 0})
    assert error.value.field == "cliprange"
    with pytest.raises(services.RunError) as error:
        services.run_start(kind="dpo", project=taught, config={"surprise": 1})
    assert "unknown dpo config field" in error.value.message
    with pytest.raises(services.RunError) as error:
        services.run_start(kind="sft", project=judged, config=SFT_TINY, base_version=sft_version)
    assert error.value.field == "base_version"


def test_too_few_demonstrations_is_refused_with_the_count(judged, no_broker):
    with pytest.raises(services.RunError) as error:
        services.run_start(kind="sft", project=judged, config=SFT_TINY)
    assert error.value.field == "dataset" and "has 0 demonstrations" in error.value.message


def test_a_snapshot_of_another_dataset_is_refused(taught, no_broker):
    other = services.snapshot_freeze(project=taught, options=datasets.REWARD_DATASET).snapshot
    with pytest.raises(services.RunError) as error:
        services.run_start(kind="sft", project=taught, config=SFT_TINY, snapshot=other)
    assert error.value.field == "snapshot" and "needs sft" in error.value.message


def test_a_failing_policy_run_registers_nothing_and_leaves_no_files(taught, no_broker, artifacts):
    run = services.run_start(kind="sft", project=taught, config={**SFT_TINY, "max_length": 100_000})
    assert runner.run_execute(run_id=run.pk, worker="test@host") == RunStatus.FAILED
    run.refresh_from_db()
    assert "max_length must be <=" in run.error and run.output_version is None
    assert not any((artifacts / "models").rglob("*-run-*"))


def test_the_prompts_export_lists_each_prompt_once(taught):
    rows = list(exports.export_rows(taught, exports.ExportOptions(dataset="prompts")))
    assert len(rows) == 12 and len({r["prompt_id"] for r in rows}) == 12
    assert rows[0]["prompt"] == "How do I fix problem 0?"
    conversational = list(exports.export_rows(taught, exports.ExportOptions(dataset="prompts", style="conversational")))
    assert conversational[0]["prompt"] == [{"role": "user", "content": "How do I fix problem 0?"}]

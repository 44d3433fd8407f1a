"""Fixtures for the training side's Django code: a project with preference judgements, a tiny backbone."""

from __future__ import annotations

from pathlib import Path

import pytest

from annotate import services
from annotate.roles import RoleName
from tests.conftest import jsonl
from tests.simulate import simulate
from training import runner
from training import services as run_services
from training.models import RunStatus, TrainingRun


def simulated_project(make_user, name: str, kinds: list[str], tasks_each: int):
    """A project of 12 prompts with 3 replies each, imported as tasks of `kinds` (one labeler per task), which two
    simulated labelers (noise 0.05 and 0.2) work through."""
    project = services.project_create(
        name=name,
        slug=name.lower(),
        import_task_kinds=kinds,
        ranking_k=3,
        overlap_demonstrate=1,
        overlap_rank=1,
        overlap_compare=1,
    )
    rows = [
        {
            "prompt": f"How do I fix problem {i}?",
            "completions": [f"Step by step fix {i}.", f"No idea {i}.", f"Maybe {i}."],
        }
        for i in range(12)
    ]
    services.prompts_import(project=project, data=jsonl(*rows), filename=f"{project.slug}.jsonl")
    labelers = {make_user(RoleName.LABELER): 0.05, make_user(RoleName.LABELER): 0.2}
    simulate(project, labelers, tasks_each=tasks_each)
    return project


@pytest.fixture
def judged(make_user, artifacts):
    """Rankings and comparisons from two simulated labelers (12 prompts, 3 replies each)."""
    return simulated_project(make_user, "Judged", ["rank", "compare"], tasks_each=20)


@pytest.fixture
def taught(make_user, artifacts):
    """Demonstrations, rankings and comparisons: 36 tasks (12 prompts × 3 kinds), 18 for each labeler."""
    return simulated_project(make_user, "Taught", ["demonstrate", "rank", "compare"], tasks_each=18)


def tiny_policy_config(**overrides) -> dict:
    """Policy run configs small enough for a test: the embedded policy on the CPU, a few steps."""
    return {"device": "cpu", "seed": 0, **overrides}


SFT_TINY = tiny_policy_config(epochs=1, batch_size=8, max_length=128, eval_share=0.25)
PPO_TINY = tiny_policy_config(steps=2, batch_size=4, mini_batch_size=2, max_new_tokens=8, max_prompt_length=64)
SAMPLE_TINY = tiny_policy_config(
    prompts=12, replies_per_prompt=3, max_new_tokens=8, max_prompt_length=64, batch_size=16
)
DPO_TINY = tiny_policy_config(epochs=1, batch_size=8, max_length=128, max_prompt_length=64, eval_share=0.25)


def tiny_config(backbone: Path | str, **overrides) -> dict:
    return {
        "base_model": str(backbone),
        "max_length": 64,
        "batch_size": 8,
        "epochs": 1,
        "eval_share": 0.25,
        **overrides,
    }


# --- runs trained in-process (no broker, no worker) ---------------------------------------------------------


@pytest.fixture
def no_broker(monkeypatch, settings):
    sent = []
    monkeypatch.setattr("training.queue.run_send", lambda run_id, task_id: sent.append((run_id,)))
    monkeypatch.setattr("training.queue.scores_send", lambda *args: None)
    settings.REWARDLAB_RUN_HEARTBEAT_SECONDS = 600  # no heartbeat thread writes during these short runs
    # The worker drops stale connections before a run; inside a test's transaction that would end the test.
    monkeypatch.setattr("training.runner.close_old_connections", lambda: None)
    return sent


def execute(run: TrainingRun) -> TrainingRun:
    assert runner.run_execute(run_id=run.pk, worker="test@host") == RunStatus.SUCCEEDED, _error(run)
    run.refresh_from_db()
    return run


def _error(run) -> str:
    run.refresh_from_db()
    return run.error


@pytest.fixture
def sft_version(taught, admin_user, no_broker):
    run = run_services.run_start(kind="sft", project=taught, config=SFT_TINY, created_by=admin_user)
    return execute(run).output_version


@pytest.fixture
def serving_reward(taught, admin_user, tiny_backbone, no_broker):
    run = execute(run_services.run_start(kind="reward", project=taught, config=tiny_config(tiny_backbone)))
    return run_services.model_version_promote(version=run.output_version)

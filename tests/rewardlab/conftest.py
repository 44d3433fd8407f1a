"""Fixtures for the training side's Django code: a project with preference judgements, a tiny backbone."""

from __future__ import annotations

from pathlib import Path

import pytest

from annotate import services
from annotate.roles import RoleName
from tests.conftest import jsonl
from tests.simulate import simulate
from tests.tiny_models import tiny_reward_backbone


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    return tiny_reward_backbone(tmp_path_factory.mktemp("tiny-bert"))


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

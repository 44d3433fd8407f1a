"""A TRL round trip: the project's exports load with `datasets` and train RewardTrainer and DPOTrainer (two steps
each, tiny local models), in both formats and both styles."""

import pytest

from annotate import exports, services
from annotate.exports import ExportOptions
from annotate.roles import RoleName
from tests.conftest import jsonl
from tests.simulate import simulate
from tests.trl_roundtrip import dpo_trainer_two_steps, reward_trainer_two_steps

pytestmark = pytest.mark.django_db


@pytest.fixture
def judged(make_user):
    project = services.project_create(
        name="Round trip", slug="round-trip", import_task_kinds=["rank", "compare"], ranking_k=3
    )
    rows = [
        {"prompt": f"Question {i}: what is {i} plus {i}?", "completions": [f" It is {2 * i}.", " No idea.", " Fish."]}
        for i in range(4)
    ]
    services.prompts_import(project=project, data=jsonl(*rows), filename="p.jsonl")
    simulate(project, {make_user(RoleName.LABELER): 0.05, make_user(RoleName.LABELER): 0.05}, tasks_each=12, seed=1)
    return project


@pytest.mark.parametrize(("style", "fmt"), [("standard", "jsonl"), ("conversational", "parquet")])
def test_exports_train_trl_reward_and_dpo_trainers(judged, tmp_path, style, fmt):
    options = ExportOptions(style=style, format=fmt)
    path = tmp_path / f"prefs.{fmt}"
    path.write_bytes(b"".join(exports.export_chunks(exports.export_rows(judged, options), fmt)))
    builder = "json" if fmt == "jsonl" else "parquet"
    reward = reward_trainer_two_steps(path, file_format=builder, tmp_dir=tmp_path / "reward")
    assert reward["rows"] >= 8 and reward["steps"] == 2 and reward["params_changed"]
    dpo = dpo_trainer_two_steps(path, file_format=builder, tmp_dir=tmp_path / "dpo")
    assert dpo["steps"] == 2 and dpo["params_changed"]

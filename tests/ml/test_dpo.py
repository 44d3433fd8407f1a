"""DPO: the loss is the formula, and training raises the implicit reward margin of its pairs."""

import json

import pytest
import torch
import torch.nn.functional as F

from ml.config import DPOConfig
from ml.dpo import dpo_loss, train_dpo
from ml.policy import POLICY_CHECKPOINT_FILE
from tests.ml.policy_data import preference_pairs, tiny_policy


def test_the_loss_is_minus_log_sigmoid_of_the_beta_scaled_log_ratio_difference():
    chosen = torch.tensor([1.0, -2.0])  # log π(y⁺|x) − log π_ref(y⁺|x)
    rejected = torch.tensor([-1.0, 0.5])
    weight = torch.tensor([1.0, 3.0])
    loss, parts = dpo_loss(chosen, rejected, weight, beta=0.5)
    margins = [0.5 * (1 + 1), 0.5 * (-2 - 0.5)]
    expected = (1 * -F.logsigmoid(torch.tensor(margins[0])) + 3 * -F.logsigmoid(torch.tensor(margins[1]))) / 4
    assert loss.item() == pytest.approx(expected.item())
    assert parts["margin"].tolist() == pytest.approx(margins)
    assert parts["chosen_reward"].tolist() == pytest.approx([0.5, -1.0])


def test_dpo_raises_the_implicit_reward_margin_on_its_pairs(tmp_path):
    base = tiny_policy(tmp_path / "base")
    config = DPOConfig(
        base_model=str(base), beta=0.1, epochs=4, batch_size=8, learning_rate=1e-3, max_length=96,
        max_prompt_length=48, device="cpu",
    )  # fmt: skip
    result = train_dpo(preference_pairs(), config, tmp_path / "dpo")
    history = result.history
    # The first step starts at the reference: every implicit reward is 0.
    assert history[0]["reward_margin"] == pytest.approx(0.0, abs=1e-4)
    assert history[-1]["reward_margin"] > 1.0
    assert history[-1]["reward_accuracy"] == 1.0
    assert result.metrics["eval_reward_margin"] > 0.5 and result.metrics["eval_reward_accuracy"] == 1.0
    assert history[-1]["loss"] < history[0]["loss"]
    meta = json.loads((result.checkpoint / POLICY_CHECKPOINT_FILE).read_text())
    assert meta["kind"] == "dpo" and meta["metrics"]["beta"] == 0.1


def test_bad_pairs_are_refused_naming_the_pair(tmp_path):
    pairs = preference_pairs(2)
    pairs[1].weight = 0
    with pytest.raises(ValueError, match="pair 1: weight must be > 0"):
        train_dpo(pairs, DPOConfig(), tmp_path / "x")
    with pytest.raises(ValueError, match="max_prompt_length must be < max_length"):
        DPOConfig(max_length=64, max_prompt_length=64)

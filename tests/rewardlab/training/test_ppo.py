"""PPO's quantities against hand-computed values on tiny examples."""

import math

import pytest
import torch

from rewardlab.training.ppo import (
    AdaptiveKLController,
    clipped_policy_loss,
    clipped_value_loss,
    entropy_from_logits,
    gae,
    kl_penalised_rewards,
    whiten,
)


def test_the_kl_penalty_is_per_token_and_the_score_lands_on_the_last_real_token():
    logprobs = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, -3.0]])
    ref = torch.tensor([[-1.5, -1.0, -0.5], [-2.0, -1.0, -1.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    rewards, kl = kl_penalised_rewards(torch.tensor([1.0, -2.0]), logprobs, ref, mask, beta=0.1)
    assert kl.tolist() == [[0.5, -1.0, 0.0], [1.0, 0.0, 0.0]]
    expected = [[-0.05, 0.1, 1.0], [-0.1, -2.0, 0.0]]
    assert rewards.tolist() == [pytest.approx(row) for row in expected]
    # Summed over a reply: R(x, y) − β log(π_RL(y|x) / π_SFT(y|x)).
    assert rewards.sum(1).tolist() == pytest.approx([1.0 - 0.1 * (-0.5), -2.0 - 0.1 * 1.0])


def test_gae_matches_the_recursion_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 0.0]])
    values = torch.tensor([[0.5, 0.6, 0.7], [0.5, 0.4, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # Row 1: δ2 = 1 − 0.7, δ1 = 0.7 − 0.6, δ0 = 0.6 − 0.5; A1 = 0.1 + 0.5·0.3, A0 = 0.1 + 0.5·0.25.
    # Row 2 ends after its second token: the padded value 9.0 plays no part.
    assert advantages.tolist() == [pytest.approx([0.225, 0.25, 0.3]), pytest.approx([0.7, 1.6, 0.0])]
    assert returns.tolist() == [pytest.approx([0.725, 0.85, 1.0]), pytest.approx([1.2, 2.0, 0.0])]


def test_gae_with_a_discount():
    advantages, _ = gae(torch.tensor([[1.0, 1.0]]), torch.zeros(1, 2), torch.ones(1, 2), gamma=0.9, lam=1.0)
    assert advantages.tolist() == [pytest.approx([1.0 + 0.9 * 1.0, 1.0])]


def test_the_clipped_objective_equals_the_formula():
    ratios = torch.tensor([[1.5, 0.5, 0.5, 9.0]])
    advantages = torch.tensor([[1.0, 1.0, -1.0, 5.0]])
    mask = torch.tensor([[1, 1, 1, 0]])  # the last token is padding and counts for nothing
    old = torch.zeros(1, 4)
    loss, clip_fraction = clipped_policy_loss(torch.log(ratios), old, advantages, mask, clip=0.2)
    # min(1.5·1, 1.2·1) = 1.2; min(0.5·1, 0.8·1) = 0.5; min(−0.5, −0.8) = −0.8
    assert loss.item() == pytest.approx(-(1.2 + 0.5 - 0.8) / 3)
    assert clip_fraction.item() == pytest.approx(2 / 3)


def test_the_value_loss_takes_the_worse_of_clipped_and_unclipped():
    values, old, returns = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 1.0]])
    loss = clipped_value_loss(values, old, returns, torch.ones(1, 2), clip=0.2)
    # Token 1: max((1−2)², (0.2−2)²) = 3.24; token 2: max(1, 1) = 1.
    assert loss.item() == pytest.approx(0.5 * (3.24 + 1.0) / 2)


def test_whitening_uses_real_tokens_only():
    values = torch.tensor([[1.0, 3.0, 100.0]])
    whitened = whiten(values, torch.tensor([[1, 1, 0]]))
    assert whitened.tolist() == [pytest.approx([-1.0, 1.0, 0.0], abs=1e-4)]


def test_entropy_of_a_uniform_distribution():
    assert entropy_from_logits(torch.zeros(2, 3, 4)).tolist() == [[pytest.approx(math.log(4))] * 3] * 2


def test_the_kl_coefficient_moves_toward_the_target():
    controller = AdaptiveKLController(value=0.1, target=6.0, horizon=10_000)
    assert controller.update(12.0, 256) == pytest.approx(0.1 * (1 + 0.2 * 256 / 10_000))  # error clipped at 0.2
    before = controller.value
    assert controller.update(3.0, 256) == pytest.approx(before * (1 - 0.2 * 256 / 10_000))
    fixed = AdaptiveKLController(value=0.1, target=None)
    assert fixed.update(100.0, 256) == 0.1

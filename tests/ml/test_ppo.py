"""PPO's quantities against hand-computed values on tiny examples."""

import itertools
import math

import pytest
import torch

from ml.ppo import (
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


# --- the loop on the tiny policy --------------------------------------------------------------------------------


def letter_share(_prompts, replies):
    """A toy reward: five times the share of the reply's characters that are the letter "e"."""
    return [5 * sum(c == "e" for c in reply) / max(1, len(reply)) for reply in replies]


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory):
    """The same 40 PPO steps from the same tiny policy, with β = 0.05 and with β = 0 (no KL penalty)."""
    from ml.config import PPOConfig
    from ml.ppo import train_ppo
    from tests.ml.policy_data import prompts, tiny_policy

    root = tmp_path_factory.mktemp("ppo")
    base = tiny_policy(root / "base")
    runs = {}
    for beta in (0.05, 0.0):
        config = PPOConfig(
            base_model=str(base), steps=40, batch_size=16, mini_batch_size=8, ppo_epochs=4, learning_rate=1e-3,
            max_new_tokens=16, max_prompt_length=32, init_kl_coef=beta, target_kl=0, device="cpu",
        )  # fmt: skip
        runs[beta] = train_ppo(prompts(), letter_share, config, root / f"ppo-{beta}")
    return runs


def _mean(history, key, rows):
    return sum(row[key] for row in rows) / len(rows)


def test_ppo_raises_the_mean_reward_while_the_kl_penalty_keeps_kl_bounded(toy_runs):
    history = toy_runs[0.05].history
    first, last = history[:10], history[-10:]
    assert _mean(history, "reward_mean", last) > 2.5 * _mean(history, "reward_mean", first)
    assert max(row["kl"] for row in history) < 20.0
    for key in ("entropy", "clip_fraction", "value_loss", "kl_coef", "approx_kl", "reply_length"):
        assert all(math.isfinite(row[key]) for row in history), key
    assert history[0]["kl"] == pytest.approx(0.0, abs=1e-4)  # the first rollout comes from the reference itself


def test_without_the_kl_penalty_kl_grows_faster(toy_runs):
    penalised, free = toy_runs[0.05].history[-5:], toy_runs[0.0].history[-5:]
    assert _mean(None, "kl", free) > 3 * _mean(None, "kl", penalised)


def test_ppo_saves_a_policy_that_samples_and_its_value_head(toy_runs):
    from ml import policy
    from ml.ppo import VALUE_HEAD_FILE

    result = toy_runs[0.05]
    assert (result.checkpoint / VALUE_HEAD_FILE).is_file()
    assert result.metrics["samples"] == 40 * 16 and result.metrics["samples_per_second"] > 0
    tokenizer, model = policy.load_policy(str(result.checkpoint))
    prompt = "<|user|>hi<|end|><|assistant|>"
    samples = policy.sample(model, tokenizer, [prompt] * 2, max_new_tokens=8, max_prompt_length=16)
    assert len(samples.texts) == 2


def test_the_adaptive_coefficient_moves_beta_toward_the_target_in_the_loop(tmp_path):
    from ml.config import PPOConfig
    from ml.ppo import train_ppo
    from tests.ml.policy_data import prompts, tiny_policy

    base = tiny_policy(tmp_path / "base")
    config = PPOConfig(
        base_model=str(base), steps=6, batch_size=8, mini_batch_size=4, learning_rate=1e-3, max_new_tokens=8,
        max_prompt_length=32, init_kl_coef=0.5, target_kl=0.01, kl_horizon=100, device="cpu",
    )  # fmt: skip
    history = train_ppo(prompts(8), letter_share, config, tmp_path / "out").history
    # Each step's β is the last one moved by the proportional error of the KL it saw: β (1 + e · n / horizon).
    for before, after in itertools.pairwise(history):
        error = min(max(before["kl"] / 0.01 - 1, -0.2), 0.2)
        assert after["kl_coef"] == pytest.approx(before["kl_coef"] * (1 + error * 8 / 100))
    # The first rollout comes from the reference itself (KL 0, below target): β shrinks first.
    assert history[0]["kl_coef"] == 0.5 and history[1]["kl_coef"] == pytest.approx(0.5 * (1 - 0.2 * 8 / 100))


def test_a_broken_reward_function_or_cancel_leaves_nothing(tmp_path):
    from ml.common import Cancelled
    from ml.config import PPOConfig
    from ml.ppo import train_ppo
    from tests.ml.policy_data import prompts, tiny_policy

    base = tiny_policy(tmp_path / "base")
    config = PPOConfig(
        base_model=str(base),
        steps=2,
        batch_size=4,
        mini_batch_size=2,
        max_new_tokens=4,
        max_prompt_length=32,
        device="cpu",
    )
    with pytest.raises(ValueError, match="the reward function returned"):
        train_ppo(prompts(4), lambda p, r: [float("nan")] * len(r), config, tmp_path / "out")
    with pytest.raises(Cancelled):
        train_ppo(prompts(4), letter_share, config, tmp_path / "out", should_cancel=lambda: True)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".tmp-*"))

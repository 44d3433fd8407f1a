"""PPO against a reward model with a KL penalty (Ziegler et al. 2019; InstructGPT, Ouyang et al. 2022).

The quantities, named as in the papers, over a batch of replies laid out `[batch, reply tokens]`, right-padded,
with `mask` 1 on the reply's real tokens:

- the KL-penalised reward  R'(x, y) = R(x, y) − β log(π_RL(y|x) / π_SFT(y|x)),  spread over tokens: every token
  pays −β (log π_RL(y_t) − log π_SFT(y_t)), and the reward model's score R(x, y) is added on the last token;
- generalised advantage estimation (Schulman et al. 2016): δ_t = r_t + γ V(s_{t+1}) − V(s_t),
  A_t = δ_t + γλ A_{t+1}, returns G_t = A_t + V(s_t);
- the clipped surrogate objective  L^CLIP = E[min(ρ_t A_t, clip(ρ_t, 1 − ε, 1 + ε) A_t)],  ρ_t = π(y_t) / π_old(y_t);
- the clipped value loss  ½ E[max((V − G)², (clip(V, V_old − ε_v, V_old + ε_v) − G)²)];
- an adaptive KL coefficient β that moves toward a target KL (Ziegler et al., section 2.2).

These functions are pure tensor code; the training loop that samples, scores and optimises comes with the policy
trainers."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def whiten(values: torch.Tensor, mask: torch.Tensor, *, shift_mean: bool = True) -> torch.Tensor:
    """Normalise advantages over the real tokens of the batch (mean 0, variance 1)."""
    mean = masked_mean(values, mask)
    variance = masked_mean((values - mean) ** 2, mask)
    whitened = (values - mean) * torch.rsqrt(variance + 1e-8)
    return (whitened if shift_mean else whitened + mean) * mask


def kl_penalised_rewards(
    scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards r_t = −β (log π_RL(y_t) − log π_SFT(y_t)), plus the reward model's score R(x, y) on each
    reply's last real token. Returns (rewards, kl) with kl the per-token log-ratio (0 on padding), whose sum over a
    reply is the sample estimate of KL(π_RL ‖ π_SFT) for it.

    >>> kl_penalised_rewards(torch.tensor([1.0]), torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -1.0]]),
    ...                      torch.tensor([[1, 1]]), beta=0.1)[0]
    tensor([[-0.0500,  1.1000]])
    """
    kl = (logprobs - ref_logprobs) * mask
    rewards = -beta * kl
    last = mask.long().cumsum(dim=1).argmax(dim=1)  # index of each reply's last real token
    rewards[torch.arange(rewards.shape[0]), last] += scores.to(rewards.dtype)
    return rewards * mask, kl


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, *, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages A_t and returns G_t = A_t + V_t by generalised advantage estimation, backwards over each reply's
    real tokens (the value after the last real token is 0: the episode ends there)."""
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    next_advantage = torch.zeros_like(next_value)
    mask = mask.to(rewards.dtype)
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = delta + gamma * lam * next_advantage
        # On padding, carry nothing: the next real step sees value 0 and advantage 0 after the end.
        advantages[:, t] = advantage * mask[:, t]
        next_value = values[:, t] * mask[:, t]
        next_advantage = advantages[:, t]
    returns = (advantages + values) * mask
    return advantages, returns


def clipped_policy_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """−L^CLIP over real tokens, and the clip fraction (share of tokens where the clipped term was chosen)."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * advantages
    loss = -masked_mean(torch.min(unclipped, clipped), mask)
    clip_fraction = masked_mean((clipped < unclipped).to(advantages.dtype), mask)
    return loss, clip_fraction


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip: float
) -> torch.Tensor:
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * masked_mean(torch.max((values - returns) ** 2, (clipped - returns) ** 2), mask)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-position entropy of the softmax over the vocabulary."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    return -(log_p.exp() * log_p).sum(-1)


@dataclass
class AdaptiveKLController:
    """β moves toward the value that keeps the observed KL near `target`: β ← β (1 + e · n / horizon), with the
    proportional error e = clip(KL / target − 1, −0.2, 0.2) (Ziegler et al. 2019). `target=None` keeps β fixed."""

    value: float
    target: float | None = 6.0
    horizon: int = 10_000

    def update(self, current_kl: float, n_steps: int) -> float:
        if self.target is not None and self.target > 0:
            error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
            self.value *= 1.0 + error * n_steps / self.horizon
        return self.value

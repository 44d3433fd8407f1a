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

`train_ppo` is the loop around them. Each step: sample one reply per prompt of a batch with the current policy
(batched, KV cache, left-padded prompts: `policy.sample`); score prompt + reply with the reward model, reading the
prompt as it was trained to; compute the log-probabilities of the reply tokens under the policy (π_old, with the
value head's V) and the frozen reference π_SFT; shape the per-token rewards and advantages; then `ppo_epochs`
passes of clipped-surrogate updates over mini-batches, and a step of the adaptive KL controller. Per step it
reports the mean reward, the KL to the reference, β, the entropy, the clip fraction and the value loss, so reward
hacking (reward up while the KL runs away) shows in the curves."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ml import policy
from ml.common import (
    CancelFn,
    Cancelled,
    LogFn,
    Progress,
    ProgressFn,
    TrainResult,
    atomic_output_dir,
    autocast,
)
from ml.config import PPOConfig, PromptRecord


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
    real tokens (the value after the last real token is 0: the episode ends there).

    With γ = λ = 1 and a critic that predicts 0 everywhere, each token's advantage is the reward still to come:

    >>> rewards, no_value, real = torch.tensor([[0.0, 0.5, 1.0]]), torch.zeros(1, 3), torch.ones(1, 3)
    >>> advantages, returns = gae(rewards, no_value, real, gamma=1.0, lam=1.0)
    >>> advantages
    tensor([[1.5000, 1.5000, 1.0000]])
    """
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
    """−L^CLIP over real tokens, and the clip fraction (share of tokens where the clipped term was chosen).

    With a positive advantage, a token whose probability ratio π/π_old rose past 1 + `clip` earns no more than
    1 + `clip` (no incentive to move further), while one whose ratio fell keeps its full, lower value:

    >>> ratios, ones = torch.tensor([[1.5, 0.5]]), torch.ones(1, 2)
    >>> clipped_policy_loss(ratios.log(), torch.zeros(1, 2), advantages=ones, mask=ones, clip=0.2)
    (tensor(-0.8500), tensor(0.5000))
    """
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


# --- the loop ---------------------------------------------------------------------------------------------------

RewardFn = Callable[[list[str], list[str]], Sequence[float]]
"""(reward prompts, replies) → one score per reply; `RewardScorer.score` is one."""

VALUE_HEAD_FILE = "value_head.pt"


class PolicyWithValue(nn.Module):
    """The policy and a value head on its last hidden state: V(s_t) for every position, sharing the trunk."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.policy = model
        hidden = model.config.hidden_size
        self.value_head = nn.Linear(hidden, 1)
        nn.init.normal_(self.value_head.weight, std=1.0 / math.sqrt(hidden + 1))
        nn.init.zeros_(self.value_head.bias)

    def forward(
        self, sequences: torch.Tensor, attention_mask: torch.Tensor, start: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log π of each reply token, V of the state before it, the logits that predicted it), for replies
        beginning at `start`. Columns that are padding in every row (left of the longest prompt in a mini-batch)
        are dropped first: positions count real tokens only, so nothing else changes."""
        lead = int((attention_mask.sum(0) > 0).long().argmax())
        lead = min(lead, start - 1)
        sequences, attention_mask, start = sequences[:, lead:], attention_mask[:, lead:], start - lead
        logprobs, logits, out = policy.reply_logprobs(
            self.policy, sequences, attention_mask, start, output_hidden_states=True
        )
        hidden = out.hidden_states[-1][:, start - 1 : -1]
        values = self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1)
        return logprobs, values.float(), logits


@dataclass
class Rollout:
    """One batch of sampled replies and everything PPO needs of them, laid out `[batch, reply tokens]`."""

    sequences: torch.Tensor
    attention_mask: torch.Tensor
    start: int  # where the replies begin in `sequences`
    mask: torch.Tensor
    old_logprobs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    scores: torch.Tensor
    kl: torch.Tensor
    texts: list[str]


def _reference_logprobs(
    reference: Any, model: Any, sequences: torch.Tensor, attention_mask: torch.Tensor, start: int
) -> torch.Tensor:
    """log π_SFT of each reply token: the frozen copy, or the same model with its LoRA adapters switched off."""
    if reference is None:
        with model.disable_adapter():
            return policy.reply_logprobs(model, sequences, attention_mask, start)[0]
    return policy.reply_logprobs(reference, sequences, attention_mask, start)[0]


def train_ppo(
    prompts: Sequence[PromptRecord],
    reward_fn: RewardFn,
    config: PPOConfig,
    output_dir: Path,
    *,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    log: LogFn | None = None,
) -> TrainResult:
    """Optimise `config.base_model` (the SFT policy, usually) by PPO against `reward_fn` on `prompts`, with a KL
    penalty toward its starting point, and save it at `output_dir` (which must not exist). Nothing is left there
    on any failure or on `Cancelled`."""
    say = log or (lambda _line: None)
    output_dir = Path(output_dir)
    prompts = list(prompts)
    if not prompts:
        raise ValueError("PPO needs prompts to sample replies for, and there are none")
    for index, record in enumerate(prompts):
        policy.check_turns(index, record.turns)
    if output_dir.exists():
        raise FileExistsError(f"output directory {output_dir} already exists; refusing to overwrite it")

    tokenizer, model, device, dtype = policy.prepare(config, prompts)
    policy.check_context(
        tokenizer, model, config.base_model, "max_prompt_length + max_new_tokens",
        config.max_prompt_length + config.max_new_tokens,
    )  # fmt: skip
    reference = None if policy.uses_lora(model) else policy.frozen_copy(model).to(device)
    agent = PolicyWithValue(model).to(device)
    trainable = [p for p in agent.parameters() if p.requires_grad]
    fused = device.type in ("cuda", "cpu")
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0, fused=fused)
    kl_control = AdaptiveKLController(config.init_kl_coef, target=config.target_kl or None, horizon=config.kl_horizon)
    say(
        f"PPO: {len(prompts)} prompts, {config.steps} steps of {config.batch_size} replies; {config.base_model} on "
        f"{device} ({str(dtype).removeprefix('torch.')}); β = {config.init_kl_coef}"
        + (f", adaptive toward KL {config.target_kl}" if config.target_kl else ", fixed")
    )
    rendered = [policy.format_prompt(tokenizer, record.turns) for record in prompts]
    rng = random.Random(config.seed)
    order: list[int] = []
    generator = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, Any]] = []
    log_every = max(1, round(config.steps / 10))
    samples_done, train_seconds, generate_seconds, reward_seconds = 0, 0.0, 0.0, 0.0

    for step in range(1, config.steps + 1):
        if should_cancel is not None and should_cancel():
            say(f"cancelled before step {step}/{config.steps}")
            raise Cancelled(f"cancelled before step {step} of {config.steps}")
        started = time.perf_counter()
        batch = []
        while len(batch) < config.batch_size:
            if not order:
                order = list(range(len(prompts)))
                rng.shuffle(order)
            batch.append(order.pop())

        # 1. Roll out: one reply per prompt, all at once.
        with autocast(device, dtype):
            samples = policy.sample(
                model,
                tokenizer,
                [rendered[i] for i in batch],
                max_new_tokens=config.max_new_tokens,
                max_prompt_length=config.max_prompt_length,
                temperature=config.temperature,
                top_k=config.top_k,
                top_p=config.top_p,
            )
        generate_seconds += samples.seconds
        # 2. Score: the reward model reads the prompt as it was trained to.
        scored = time.perf_counter()
        scores = torch.tensor(
            [float(x) for x in reward_fn([prompts[i].reward_prompt for i in batch], samples.texts)],
            dtype=torch.float32,
            device=device,
        )
        reward_seconds += time.perf_counter() - scored
        if scores.shape[0] != len(batch) or not torch.isfinite(scores).all():
            raise ValueError(f"the reward function returned {scores.tolist()!r} for {len(batch)} replies")
        rollout = _rollout(agent, model, reference, samples, scores, kl_control.value, config, device, dtype)

        # 3. Optimise the clipped surrogate over mini-batches.
        agent.train()
        stats: dict[str, list[float]] = {key: [] for key in ("policy_loss", "value_loss", "clip_fraction", "entropy")}
        stats["approx_kl"] = []
        for _ in range(config.ppo_epochs):
            permutation = torch.randperm(len(batch), generator=generator).tolist()
            for first in range(0, len(batch), config.mini_batch_size):
                index = permutation[first : first + config.mini_batch_size]
                with autocast(device, dtype):
                    logprobs, values, logits = agent(
                        rollout.sequences[index], rollout.attention_mask[index], rollout.start
                    )
                mask = rollout.mask[index]
                policy_loss, clip_fraction = clipped_policy_loss(
                    logprobs, rollout.old_logprobs[index], rollout.advantages[index], mask, config.cliprange
                )
                value_loss = clipped_value_loss(
                    values, rollout.values[index], rollout.returns[index], mask, config.cliprange_value
                )
                loss = policy_loss + config.vf_coef * value_loss
                loss.backward()
                if config.grad_clip > 0:
                    nn.utils.clip_grad_norm_(trainable, config.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                with torch.no_grad():
                    stats["policy_loss"].append(policy_loss.item())
                    stats["value_loss"].append(value_loss.item())
                    stats["clip_fraction"].append(clip_fraction.item())
                    stats["entropy"].append(masked_mean(entropy_from_logits(logits), mask).item())
                    log_ratio = logprobs - rollout.old_logprobs[index]
                    stats["approx_kl"].append(masked_mean(0.5 * log_ratio**2, mask).item())

        # 4. β follows the KL actually observed.
        kl_per_reply = float(rollout.kl.sum(-1).mean())
        beta = kl_control.value
        kl_control.update(kl_per_reply, len(batch))
        train_seconds += time.perf_counter() - started
        samples_done += len(batch)
        row = {
            "reward_mean": float(rollout.scores.mean()),
            "reward_std": float(rollout.scores.std()) if len(batch) > 1 else 0.0,
            "kl": kl_per_reply,
            "kl_coef": beta,
            "penalised_reward_mean": float(rollout.scores.mean()) - beta * kl_per_reply,
            "reply_length": float(rollout.mask.sum(-1).float().mean()),
            **{key: sum(values) / len(values) for key, values in stats.items()},
            "loss": sum(stats["policy_loss"]) / len(stats["policy_loss"]),
        }
        history.append({"step": step, **row})
        if progress is not None:
            progress(Progress(step=step, total=config.steps, epoch=step / config.steps, metrics=row))
        if step % log_every == 0 or step == config.steps:
            say(
                f"step {step}/{config.steps}: reward {row['reward_mean']:.3f}, KL {row['kl']:.3f} (β {beta:.4f}), "
                f"entropy {row['entropy']:.3f}, clip {row['clip_fraction']:.3f}, value loss {row['value_loss']:.4f}, "
                f"{samples_done / train_seconds:.1f} samples/s"
            )
            say(f"  sample: {rollout.texts[0][:160]!r} → {float(rollout.scores[0]):.3f}")

    window = max(1, len(history) // 10)
    metrics = {
        "reward_mean_first": sum(r["reward_mean"] for r in history[:window]) / window,
        "reward_mean_last": sum(r["reward_mean"] for r in history[-window:]) / window,
        "kl_last": sum(r["kl"] for r in history[-window:]) / window,
        "kl_coef_last": kl_control.value,
        "entropy_last": history[-1]["entropy"],
        "prompts": len(prompts),
        "steps": config.steps,
        "samples": samples_done,
        "train_seconds": train_seconds,
        "samples_per_second": samples_done / train_seconds if train_seconds else 0.0,
        "generate_seconds": generate_seconds,
        "reward_seconds": reward_seconds,
    }
    with atomic_output_dir(output_dir) as tmp:
        torch.save(agent.value_head.state_dict(), tmp / VALUE_HEAD_FILE)
        policy.save_policy(model, tokenizer, tmp, {"kind": "ppo", "config": config.to_dict(), "metrics": metrics})
    say(f"saved the PPO policy to {output_dir}")
    return TrainResult(checkpoint=output_dir, metrics=metrics, history=history)


@torch.no_grad()
def _rollout(
    agent: PolicyWithValue,
    model: Any,
    reference: Any,
    samples: policy.Samples,
    scores: torch.Tensor,
    beta: float,
    config: PPOConfig,
    device: torch.device,
    dtype: torch.dtype,
) -> Rollout:
    """π_old's log-probabilities and values, π_SFT's log-probabilities, then the KL-penalised rewards, GAE
    advantages (whitened) and returns of a batch of samples."""
    agent.eval()
    sequences, attention_mask = samples.sequences.to(device), samples.attention_mask.to(device)
    start = samples.prompt_width
    mask = samples.reply_mask.to(device).float()
    with autocast(device, dtype):
        old_logprobs, values, _ = agent(sequences, attention_mask, start)
        ref_logprobs = _reference_logprobs(reference, model, sequences, attention_mask, start)
    rewards, kl = kl_penalised_rewards(scores, old_logprobs, ref_logprobs.float(), mask, beta)
    advantages, returns = gae(rewards, values * mask, mask, gamma=config.gamma, lam=config.lam)
    if config.whiten_advantages:
        advantages = whiten(advantages, mask)
    return Rollout(
        sequences, attention_mask, start, mask, old_logprobs, values, advantages, returns, scores, kl, samples.texts
    )

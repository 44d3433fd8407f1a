"""Direct preference optimisation (Rafailov et al. 2023): the policy learns from preference pairs directly, with
no reward model and no sampling.

For a pair, with π the policy being trained and π_ref the frozen starting policy, the implicit reward of a reply is
r(x, y) = β log(π(y|x) / π_ref(y|x)), and the loss is −log σ(r(x, y⁺) − r(x, y⁻)) (weighted by the pair's
weight). The reference log-probabilities never change, so they are computed once before training and the
reference model is dropped: training holds one model in memory, not two.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from ml import policy
from ml.common import (
    CancelFn,
    LogFn,
    ProgressFn,
    TrainResult,
    atomic_output_dir,
    autocast,
    fit,
    split_groups,
    to_device,
)
from ml.config import ChatPairRecord, DPOConfig


def dpo_loss(
    chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, weight: torch.Tensor, beta: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The weighted DPO loss from each pair's log π/π_ref of the chosen and the rejected reply (summed over the
    reply's tokens), and the implicit rewards: ``chosen_reward`` = β·log-ratio of the chosen reply, and so on;
    ``margin`` = chosen − rejected reward.

    At the start the policy is the reference, every log-ratio is 0 and the loss is log 2; it falls as the policy
    raises the chosen reply's probability relative to the reference more than the rejected one's:

    >>> loss, _ = dpo_loss(torch.zeros(4), torch.zeros(4), torch.ones(4), beta=0.1)
    >>> loss
    tensor(0.6931)
    >>> loss, parts = dpo_loss(torch.tensor([4.0]), torch.tensor([-6.0]), torch.ones(1), beta=0.1)
    >>> parts["margin"], loss  # β·(4 − (−6)) = 1, −log σ(1)
    (tensor([1.]), tensor(0.3133))
    """
    chosen_rewards = beta * chosen_logratios
    rejected_rewards = beta * rejected_logratios
    margin = chosen_rewards - rejected_rewards
    loss = (weight * -F.logsigmoid(margin)).sum() / weight.sum()
    return loss, {"chosen_reward": chosen_rewards, "rejected_reward": rejected_rewards, "margin": margin}


def _summary(parts: dict[str, torch.Tensor], weight: torch.Tensor, prefix: str = "") -> dict[str, float]:
    def mean(values: torch.Tensor) -> float:
        return float((weight * values.detach()).sum() / weight.sum())

    return {
        f"{prefix}reward_margin": mean(parts["margin"]),
        f"{prefix}reward_accuracy": mean((parts["margin"] > 0).float()),
        f"{prefix}chosen_reward": mean(parts["chosen_reward"]),
        f"{prefix}rejected_reward": mean(parts["rejected_reward"]),
    }


def train_dpo(
    records: Sequence[ChatPairRecord],
    config: DPOConfig,
    output_dir: Path,
    *,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    log: LogFn | None = None,
) -> TrainResult:
    """Train `config.base_model` by DPO on `records` and save the policy at `output_dir` (which must not exist).
    History rows carry ``loss``, ``reward_margin``, ``reward_accuracy``, ``chosen_reward`` and ``rejected_reward``
    (and ``eval_*`` of each at epoch ends when pairs are held out)."""
    say = log or (lambda _line: None)
    output_dir = Path(output_dir)
    records = list(records)
    for index, record in enumerate(records):
        policy.check_turns(index, record.turns)
        for name in ("chosen", "rejected"):
            if not isinstance(getattr(record, name), str):
                raise ValueError(f"pair {index}: {name} must be text")
        if not record.weight > 0:
            raise ValueError(f"pair {index}: weight must be > 0, got {record.weight!r}")
    if output_dir.exists():
        raise FileExistsError(f"output directory {output_dir} already exists; refusing to overwrite it")
    train, held_out = split_groups(records, config.eval_share, config.seed, key=policy.chat_group)
    if not train:
        raise ValueError(f"no preference pairs to train on ({len(records)} in all)")

    tokenizer, model, device, dtype = policy.prepare(config, records)
    say(
        f"DPO: {len(train)} pairs, {len(held_out)} held out; β = {config.beta}; {config.base_model} on {device} "
        f"({str(dtype).removeprefix('torch.')})"
    )
    policy.check_context(tokenizer, model, config.base_model, "max_length", config.max_length)

    def encode(rows: list[ChatPairRecord]) -> tuple[list, list, torch.Tensor]:
        prompts = [policy.format_prompt(tokenizer, r.turns) for r in rows]
        args = (config.max_length, config.max_prompt_length)
        chosen = [policy.encode_chat(tokenizer, p, r.chosen, *args) for p, r in zip(prompts, rows, strict=True)]
        rejected = [policy.encode_chat(tokenizer, p, r.rejected, *args) for p, r in zip(prompts, rows, strict=True)]
        return chosen, rejected, torch.tensor([r.weight for r in rows], dtype=torch.float32)

    train_chosen, train_rejected, train_weight = encode(train)
    eval_chosen, eval_rejected, eval_weight = encode(held_out)

    def logprob_sums(chosen: list, rejected: list) -> tuple[torch.Tensor, torch.Tensor]:
        """Σ log π(reply tokens) of each chosen and each rejected reply, in one forward."""
        batch = to_device(policy.pad_completions(chosen + rejected, tokenizer.pad_token_id), device)
        with autocast(device, dtype):
            logprobs, mask = policy.completion_logprobs(model, batch)
        sums = (logprobs * mask).sum(-1)
        return sums[: len(chosen)], sums[len(chosen) :]

    @torch.inference_mode()
    def reference(chosen: list, rejected: list) -> tuple[torch.Tensor, torch.Tensor]:
        """The starting policy's log-probabilities, computed once, before any update."""
        model.eval()
        if policy.uses_lora(model):
            with model.disable_adapter():
                parts = [logprob_sums(chosen[i : i + 32], rejected[i : i + 32]) for i in range(0, len(chosen), 32)]
        else:
            parts = [logprob_sums(chosen[i : i + 32], rejected[i : i + 32]) for i in range(0, len(chosen), 32)]
        if not parts:
            return torch.empty(0, device=device), torch.empty(0, device=device)
        return torch.cat([c for c, _ in parts]), torch.cat([r for _, r in parts])

    say("computing the reference policy's log-probabilities once")
    train_ref = reference(train_chosen, train_rejected)
    eval_ref = reference(eval_chosen, eval_rejected)

    def pair_loss(chosen, rejected, ref_chosen, ref_rejected, weight):
        policy_chosen, policy_rejected = logprob_sums(chosen, rejected)
        return dpo_loss(policy_chosen - ref_chosen, policy_rejected - ref_rejected, weight.to(device), config.beta)

    def step_loss(indices: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        index = torch.tensor(indices, device=device)
        weight = train_weight[indices]
        loss, parts = pair_loss(
            [train_chosen[i] for i in indices],
            [train_rejected[i] for i in indices],
            train_ref[0][index],
            train_ref[1][index],
            weight,
        )
        return loss, _summary(parts, weight.to(device))

    @torch.inference_mode()
    def evaluate() -> dict[str, float]:
        model.eval()
        losses, all_parts = [], []
        for start in range(0, len(eval_chosen), config.batch_size):
            stop = start + config.batch_size
            loss, parts = pair_loss(
                eval_chosen[start:stop],
                eval_rejected[start:stop],
                eval_ref[0][start:stop],
                eval_ref[1][start:stop],
                eval_weight[start:stop],
            )
            losses.append(loss * eval_weight[start:stop].sum())
            all_parts.append(parts)
        merged = {key: torch.cat([p[key] for p in all_parts]) for key in all_parts[0]}
        weight = eval_weight.to(device)
        return {"eval_loss": float(sum(losses) / weight.sum()), **_summary(merged, weight, prefix="eval_")}

    fitted = fit(
        model=model,
        lengths=[max(len(c[0]), len(r[0])) for c, r in zip(train_chosen, train_rejected, strict=True)],
        config=config,
        step_loss=step_loss,
        evaluate=evaluate if eval_chosen else None,
        progress=progress,
        should_cancel=should_cancel,
        say=say,
        unit="pairs",
    )
    final = fitted.evaluation or {}
    metrics = {
        "train_loss": fitted.train_loss,
        **{key: final.get(key) for key in ("eval_loss", "eval_reward_margin", "eval_reward_accuracy")},
        "train_reward_margin": fitted.history[-1]["reward_margin"],
        "train_pairs": len(train),
        "eval_pairs": len(held_out),
        "beta": config.beta,
        "steps": fitted.steps,
        "train_seconds": fitted.train_seconds,
        "train_pairs_per_second": fitted.examples / fitted.train_seconds if fitted.train_seconds else 0.0,
    }
    with atomic_output_dir(output_dir) as tmp:
        policy.save_policy(model, tokenizer, tmp, {"kind": "dpo", "config": config.to_dict(), "metrics": metrics})
    say(f"saved the DPO policy to {output_dir}")
    return TrainResult(checkpoint=output_dir, metrics=metrics, history=fitted.history)

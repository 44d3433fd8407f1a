"""Supervised fine-tuning on demonstrations (InstructGPT's first step).

Each `ChatRecord` is a conversation and the assistant reply a person wrote for it. The policy reads the
conversation rendered by its chat template (`policy.format_prompt`) followed by the reply and an end-of-sequence
token; the loss is the cross-entropy of the reply's tokens only (the prompt's tokens are context, never targets),
averaged over the batch's reply tokens. Whole prompts are held out for evaluation (held-out loss and perplexity).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

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
from ml.config import ChatRecord, SFTConfig


def completion_loss(logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood over the reply tokens (`mask` 1) of the batch: every reply token counts once,
    however the tokens are spread over the rows, and the prompt's tokens (and padding) not at all.

    >>> logprobs = torch.tensor([[-9.0, -1.0, -3.0], [-7.0, -2.0, -5.0]])
    >>> completion_loss(logprobs, torch.tensor([[0, 1, 1], [0, 1, 0]]))  # (1 + 3 + 2) / 3
    tensor(2.)
    """
    mask = mask.to(logprobs.dtype)
    return -(logprobs * mask).sum() / mask.sum().clamp(min=1)


def train_sft(
    records: Sequence[ChatRecord],
    config: SFTConfig,
    output_dir: Path,
    *,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    log: LogFn | None = None,
) -> TrainResult:
    """Fine-tune `config.base_model` on `records` and save the policy at `output_dir` (which must not exist).

    Raises `ValueError` before any work on bad records or when nothing is left to train on; `Cancelled` when
    `should_cancel` says so. Nothing is left at `output_dir` on any failure."""
    say = log or (lambda _line: None)
    output_dir = Path(output_dir)
    records = list(records)
    for index, record in enumerate(records):
        policy.check_turns(index, record.turns)
        if not isinstance(record.reply, str) or not record.reply.strip():
            raise ValueError(f"record {index}: reply must be non-empty text")
    if output_dir.exists():
        raise FileExistsError(f"output directory {output_dir} already exists; refusing to overwrite it")
    train, held_out = split_groups(records, config.eval_share, config.seed, key=policy.chat_group)
    if not train:
        raise ValueError(f"no demonstrations to train on ({len(records)} in all)")

    tokenizer, model, device, dtype = policy.prepare(config, records)
    say(
        f"SFT: {len(train)} demonstrations, {len(held_out)} held out; {config.base_model} on {device} "
        f"({str(dtype).removeprefix('torch.')}), {sum(p.numel() for p in model.parameters() if p.requires_grad):,} "
        "trainable parameters"
    )
    policy.check_context(tokenizer, model, config.base_model, "max_length", config.max_length)

    def encode(rows: list[ChatRecord]) -> list[tuple[list[int], int]]:
        return [
            policy.encode_chat(tokenizer, policy.format_prompt(tokenizer, r.turns), r.reply, config.max_length)
            for r in rows
        ]

    train_rows, eval_rows = encode(train), encode(held_out)

    def batch_loss(rows: list[tuple[list[int], int]]) -> tuple[torch.Tensor, int]:
        batch = to_device(policy.pad_completions(rows, tokenizer.pad_token_id), device)
        with autocast(device, dtype):
            logprobs, mask = policy.completion_logprobs(model, batch)
        return completion_loss(logprobs, mask), int(mask.sum())

    def step_loss(indices: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        loss, tokens = batch_loss([train_rows[i] for i in indices])
        return loss, {"tokens": float(tokens)}

    @torch.inference_mode()
    def evaluate() -> dict[str, float]:
        model.eval()
        total, tokens = 0.0, 0
        for start in range(0, len(eval_rows), config.batch_size):
            loss, n = batch_loss(eval_rows[start : start + config.batch_size])
            total, tokens = total + loss.item() * n, tokens + n
        mean = total / max(1, tokens)
        return {"eval_loss": mean, "eval_perplexity": math.exp(min(mean, 50.0))}

    fitted = fit(
        model=model,
        lengths=[len(ids) for ids, _ in train_rows],
        config=config,
        step_loss=step_loss,
        evaluate=evaluate if eval_rows else None,
        progress=progress,
        should_cancel=should_cancel,
        say=say,
        unit="demonstrations",
    )
    metrics = {
        "train_loss": fitted.train_loss,
        "eval_loss": fitted.evaluation["eval_loss"] if fitted.evaluation else None,
        "eval_perplexity": fitted.evaluation["eval_perplexity"] if fitted.evaluation else None,
        "train_examples": len(train),
        "eval_examples": len(held_out),
        "steps": fitted.steps,
        "train_seconds": fitted.train_seconds,
        "train_examples_per_second": fitted.examples / fitted.train_seconds if fitted.train_seconds else 0.0,
    }
    with atomic_output_dir(output_dir) as tmp:
        policy.save_policy(model, tokenizer, tmp, {"kind": "sft", "config": config.to_dict(), "metrics": metrics})
    say(f"saved the SFT policy to {output_dir}")
    return TrainResult(checkpoint=output_dir, metrics=metrics, history=fitted.history)

"""Sampling new candidate replies from a policy for labelers to judge (the loop's way back to people).

Pure torch + transformers, like the trainers: prompts in, unique reply texts out. A reply that repeats another
reply to the same prompt, or a candidate the prompt already has (`exclude`), is dropped, and prompts left short
are drawn for again, up to `resample_rounds` more rounds; an empty reply is dropped too. Two texts are the same
reply when they match after collapsing whitespace."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ml import policy
from ml.common import CancelFn, Cancelled, LogFn, Progress, ProgressFn, pick_device, seed_everything
from ml.config import SampleConfig


@dataclass
class SampleRequest:
    """One prompt to sample for: the conversation (`turns`, ending with a user turn) and the replies it has."""

    turns: list[dict[str, str]]
    exclude: list[str] = field(default_factory=list)


@dataclass
class SampleResult:
    replies: list[list[str]]  # per request, in the order drawn, unique
    drawn: int = 0
    duplicates: int = 0
    empty: int = 0
    tokens: int = 0
    seconds: float = 0.0

    @property
    def kept(self) -> int:
        return sum(len(r) for r in self.replies)

    @property
    def replies_per_second(self) -> float:
        return self.drawn / self.seconds if self.seconds else 0.0


def reply_key(text: str) -> str:
    return " ".join(text.split())


def clean_reply(text: str) -> str:
    """A decoded reply as text people read and a database stores: no NUL characters (a byte-level model can decode
    one, and PostgreSQL refuses them in text), no surrounding whitespace."""
    return text.replace("\x00", "").strip()


def sample_replies(
    model_path: str,
    requests: Sequence[SampleRequest],
    config: SampleConfig,
    *,
    replies_per_prompt: int | None = None,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    log: LogFn | None = None,
    loaded: tuple[Any, Any] | None = None,
) -> SampleResult:
    """Up to `replies_per_prompt` (default: the config's) unique replies to each request, from the policy
    checkpoint at `model_path` (or the `loaded` (tokenizer, model)), in batches of `config.batch_size`."""
    n = replies_per_prompt or config.replies_per_prompt
    for index, request in enumerate(requests):
        policy.check_turns(index, request.turns)
    seed_everything(config.seed)
    if loaded is None:
        tokenizer, model = policy.load_policy(model_path, trainable=False)
        model = model.to(pick_device(config.device))
    else:
        tokenizer, model = loaded
    prompts = [policy.format_prompt(tokenizer, request.turns) for request in requests]
    seen = [{reply_key(text) for text in request.exclude} for request in requests]
    result = SampleResult(replies=[[] for _ in requests])
    started = time.perf_counter()
    step = 0
    total = math.ceil(n * len(requests) / config.batch_size)
    for round_ in range(config.resample_rounds + 1):
        wanted = [i for i, replies in enumerate(result.replies) for _ in range(n - len(replies))]
        if not wanted:
            break
        if round_:
            total = step + math.ceil(len(wanted) / config.batch_size)
            if log:
                log(f"Round {round_ + 1}: {len(wanted)} more replies for prompts left short by duplicates")
        for start in range(0, len(wanted), config.batch_size):
            if should_cancel and should_cancel():
                raise Cancelled()
            batch = wanted[start : start + config.batch_size]
            samples = policy.sample(
                model,
                tokenizer,
                [prompts[i] for i in batch],
                max_new_tokens=config.max_new_tokens,
                max_prompt_length=config.max_prompt_length,
                temperature=config.temperature,
                top_k=config.top_k,
                top_p=config.top_p,
            )
            result.drawn += len(batch)
            result.tokens += samples.reply_tokens
            for i, text in zip(batch, samples.texts, strict=True):
                text = clean_reply(text)
                key = reply_key(text)
                if not key:
                    result.empty += 1
                elif key in seen[i] or len(result.replies[i]) >= n:
                    result.duplicates += 1
                else:
                    seen[i].add(key)
                    result.replies[i].append(text)
            step += 1
            result.seconds = time.perf_counter() - started
            if progress:
                metrics = {
                    "replies_per_second": result.replies_per_second,
                    "duplicate_share": result.duplicates / result.drawn,
                    "kept": float(result.kept),
                }
                progress(Progress(step=step, total=max(total, step), epoch=float(round_), metrics=metrics))
    result.seconds = time.perf_counter() - started
    return result
